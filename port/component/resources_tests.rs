//! Resource handles: which functions carry them, the host resource types, imports naming
//! resources, and what `wit_resource` says of a WIT resource.

use super::host_resources::type_number;
use super::resources::carries_handles;
use super::testing::{func, instance};
use super::{imports, wit_resources};
use crate::protocol::Request;
use crate::term::{self, atom, nil, string};
use eetf::Term;

const COUNTERS: &str = "wasmex:resources/counters@0.1.0";

fn fixture_wit(file: &str) -> String {
    let path = format!(
        "{}/test/fixtures/components/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).expect("the fixture's WIT")
}

#[test]
fn functions_with_a_handle_anywhere_in_their_type_carry_handles() {
    let (mut store, inst) = instance("resources.wasm");
    let carries = |store: &mut _, name: &str| {
        let f = func(store, &inst, &[COUNTERS, name]);
        carries_handles(&f.ty(&*store))
    };
    assert!(carries(&mut store, "[constructor]counter"), "returns own");
    assert!(
        carries(&mut store, "[method]counter.get-value"),
        "takes borrow self"
    );
    assert!(carries(&mut store, "value-of"));
    assert!(!carries(&mut store, "live-counters"));
}

#[test]
fn host_resource_types_are_numbered_once_per_interface_and_name() {
    let a = type_number("t:t/a@1.0.0", "counter").unwrap();
    let b = type_number("t:t/b@1.0.0", "counter").unwrap();
    assert_ne!(a, b, "the same name in two interfaces is two types");
    assert_eq!(type_number("t:t/a@1.0.0", "counter").unwrap(), a);
}

#[test]
fn imports_name_functions_and_resources() {
    let parsed = imports::parse(&term::list(vec![
        term::tuple(vec![nil(), string("log")]),
        term::tuple(vec![string("a:b/c"), string("counter"), atom("resource")]),
    ]))
    .unwrap();
    assert_eq!(
        parsed,
        vec![
            (None, "log".to_string(), false),
            (Some("a:b/c".to_string()), "counter".to_string(), true)
        ]
    );
    let err = imports::parse(&term::list(vec![term::tuple(vec![
        string("a:b/c"),
        string("counter"),
        atom("function"),
    ])]))
    .unwrap_err();
    assert!(err.contains("{Interface, Name, resource}"), "{err}");
}

fn describe(
    source: Term,
    resource: &str,
    interface: Term,
    direction: &str,
) -> Result<Term, String> {
    wit_resources::request(&Request {
        id: 1,
        op: "wit_resource".into(),
        args: vec![source, nil(), string(resource), interface, atom(direction)],
        tail: None,
    })
}

fn text(wit: &str) -> Term {
    term::tuple(vec![atom("text"), string(wit)])
}

/// `{Kind, Name, Params, Shape}` of each function.
fn functions(description: &Term) -> Vec<Term> {
    let parts = term::as_tuple(description, 4, "description").unwrap();
    term::as_list(&parts[2], "functions").unwrap().into_owned()
}

fn function(kind: &str, name: &str, params: &[&str], shape: Term) -> Term {
    term::tuple(vec![
        atom(kind),
        string(name),
        term::list(params.iter().map(|p| string(p)).collect()),
        shape,
    ])
}

#[test]
fn describes_an_exported_resource() {
    let described = describe(
        text(&fixture_wit("resources.wit")),
        "counter",
        nil(),
        "export",
    )
    .unwrap();
    let parts = term::as_tuple(&described, 4, "description").unwrap();
    assert_eq!(parts[0], string(COUNTERS));
    let fns = functions(&described);
    assert_eq!(
        fns[0],
        function("constructor", "constructor", &["initial"], atom("handle"))
    );
    assert_eq!(
        fns[1],
        function("static", "with-value", &["value"], atom("handle"))
    );
    assert_eq!(fns[2], function("method", "get-value", &[], nil()));
    assert_eq!(fns[4], function("method", "add-from", &["other"], nil()));
    assert_eq!(fns.len(), 7);
}

#[test]
fn describes_where_handles_are_in_an_imported_resource_s_results() {
    let path = format!(
        "{}/test/fixtures/components/host_resources.wit",
        env!("CARGO_MANIFEST_DIR")
    );
    let source = term::tuple(vec![atom("path"), string(&path)]);
    let described = describe(source, "counter", nil(), "import").unwrap();
    let parts = term::as_tuple(&described, 4, "description").unwrap();
    assert_eq!(parts[3], term::list(vec![string(&path)]), "the files read");
    let try_make = functions(&described)
        .into_iter()
        .find(|f| term::as_tuple(f, 4, "f").unwrap()[1] == string("try-make"))
        .unwrap();
    let shape = term::tuple(vec![atom("result"), atom("handle"), nil()]);
    assert_eq!(try_make, function("static", "try-make", &["value"], shape));
}

#[test]
fn says_why_a_resource_cannot_be_described() {
    let wit = fixture_wit("resources.wit");
    let err = describe(text(&wit), "gauge", nil(), "export").unwrap_err();
    assert_eq!(err, "the world resources exports no resource gauge");
    let err = describe(text(&wit), "counter", nil(), "import").unwrap_err();
    assert_eq!(err, "the world resources imports no resource counter");
    let err = describe(text(&wit), "counter", string("x:y/z"), "export").unwrap_err();
    assert_eq!(
        err,
        "the world resources exports no resource counter in x:y/z"
    );
    let two = "package a:b;
        interface one { resource r; }
        interface two { resource r; }
        world w { export one; export two; }";
    let err = describe(text(two), "r", nil(), "export").unwrap_err();
    assert!(
        err.contains("in several interfaces (a:b/one, a:b/two): choose one"),
        "{err}"
    );
    assert!(describe(text(two), "r", string("a:b/two"), "export").is_ok());
    let missing = term::tuple(vec![atom("path"), string("/nonexistent/x.wit")]);
    let err = describe(missing, "r", nil(), "export").unwrap_err();
    assert!(
        err.starts_with("the WIT at /nonexistent/x.wit does not parse"),
        "{err}"
    );
}
