use super::*;

/// An entry as wasmtime-wasi writes it: next cookie, inode, name length, type, padding,
/// then the name.
fn entry(next: u64, name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&next.to_le_bytes());
    bytes.extend_from_slice(&7u64.to_le_bytes());
    bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&[4, 0, 0, 0]);
    bytes.extend_from_slice(name.as_bytes());
    bytes
}

const DIR: (u64, u64) = (1, 2);

fn place(cookie: u64) -> Place {
    Place {
        fd: 3,
        dir: DIR,
        cookie,
    }
}

/// Entries named `names`, the first at cookie `first`, as one output.
fn output(first: u64, names: &[&str]) -> Vec<u8> {
    (first..)
        .zip(names)
        .flat_map(|(cookie, name)| entry(cookie + 1, name))
        .collect()
}

/// A listing of `names` from `first`, written into a buffer of `cap` bytes.
fn listing(first: u64, names: &[&str], cap: usize) -> Listing {
    let mut bytes = output(first, names);
    let used = bytes.len().min(cap);
    bytes.resize(cap.max(bytes.len()), 0);
    Listing::new(place(first), bytes, used, cap)
}

#[test]
fn a_whole_listing_answers_any_cookie_as_wasmtime_wasi_would() {
    let names = [".", "..", "a.txt", "b.txt"];
    let l = listing(0, &names, 1024);
    let all = output(0, &names);
    assert_eq!(l.answer(place(0), 4096), Some(&all[..]));
    assert_eq!(l.answer(place(2), 4096), Some(&output(2, &names[2..])[..]));
    assert_eq!(l.answer(place(0), 30), Some(&all[..30]));
}

#[test]
fn a_whole_listing_read_at_its_end_answers_nothing() {
    let l = listing(0, &[".", "..", "a"], 1024);
    assert_eq!(l.answer(place(3), 4096), Some(&[][..]));
}

#[test]
fn a_cut_listing_keeps_its_complete_entries_only() {
    let names = ["first", "second"];
    let cap = output(0, &names).len() - 2;
    let l = listing(0, &names, cap);
    assert_eq!(l.starts, vec![0]);
    assert_eq!(l.bytes, entry(1, "first"));
}

#[test]
fn a_cut_listing_cannot_answer_a_read_it_does_not_fill() {
    let l = listing(0, &["first", "second"], 40);
    assert!(!l.whole);
    assert_eq!(l.answer(place(0), 4096), None);
    assert_eq!(l.answer(place(0), 10), Some(&entry(1, "first")[..10]));
}

#[test]
fn a_listing_from_a_later_cookie_answers_from_there_only() {
    let l = listing(5, &["e", "f"], 1024);
    assert_eq!(l.answer(place(4), 4096), None);
    assert_eq!(l.answer(place(6), 4096), Some(&entry(7, "f")[..]));
    assert_eq!(l.answer(place(8), 4096), None);
}

#[test]
fn another_descriptor_or_directory_is_not_answered() {
    let l = listing(0, &["a"], 1024);
    let other_fd = Place { fd: 4, ..place(0) };
    let other_dir = Place {
        dir: (1, 9),
        ..place(0)
    };
    assert_eq!(l.answer(other_fd, 4096), None);
    assert_eq!(l.answer(other_dir, 4096), None);
}
