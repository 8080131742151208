"""The same programs as bench/programs.exs, run in-process by wasmtime-py: a baseline of
in-process Wasm on the machine and in the minute of the port's own figures.

    python inprocess.py CACHE REPEATS

CACHE holds the programs (bench/programs/fetch.sh). wasmtime-py has the settings the
port's default engine gives Wasm code: Cranelift's `none` optimization level (the
default of `Wasmex.EngineConfig`, as of Wasmex 0.9.1) and epoch interruption on, with a
deadline that never comes. A program's output goes to a file, the nearest in-process
sink wasmtime-py has. Prints one line per
figure, `name median unit`, named as the port's figure it stands beside, prefixed with
`inprocess_`.
"""

import os
import statistics
import sys
import tempfile
import time

import wasmtime

CACHE, REPEATS = sys.argv[1], int(sys.argv[2])
OUT = tempfile.mkdtemp(prefix="wasmex_inprocess_")

SORT = (
    "let a=[];for(let i=0;i<10000;i++)a.push((i*7919)%10007);"
    "a.sort((x,y)=>x-y);print(a.join(','))"
)

# figure name, program, argv, lines of output expected
CASES = [
    ("js_empty_program", "quickjs", ["qjs", "-e", ""], 0),
    ("js_sort_10000_print", "quickjs", ["qjs", "-e", SORT], 1),
    ("js_print_2000_to_pipe", "quickjs", ["qjs", "-e", "for(let i=0;i<2000;i++)print(i)"], 2000),
    ("py_empty_program", "python", ["python", "-c", "pass"], 0),
    ("py_print_20000_to_pipe", "python", ["python", "-c", "for i in range(20000): print(i)"], 20000),
]


def engine(epoch=True):
    config = wasmtime.Config()
    config.cranelift_opt_level = "none"
    config.epoch_interruption = epoch
    return wasmtime.Engine(config)


def run(eng, linker, module, argv):
    store = wasmtime.Store(eng)
    store.set_epoch_deadline(1 << 62)
    wasi = wasmtime.WasiConfig()
    wasi.argv = argv
    wasi.stdout_file = os.path.join(OUT, "stdout")
    wasi.stderr_file = os.path.join(OUT, "stderr")
    store.set_wasi(wasi)
    start = linker.instantiate(store, module).exports(store)["_start"]
    try:
        start(store)
    except wasmtime.ExitTrap as exit_trap:
        if exit_trap.code != 0:
            raise
    with open(os.path.join(OUT, "stdout"), "rb") as out:
        return out.read().count(b"\n")


def figure(name, value, unit):
    print(f"inprocess_{name} {value:.3f} {unit}", flush=True)


def timed(fun):
    t0 = time.perf_counter()
    result = fun()
    return (time.perf_counter() - t0) * 1000, result


def main():
    eng = engine()
    linker = wasmtime.Linker(eng)
    linker.define_wasi()
    sources = {name: open(os.path.join(CACHE, f"{name}.wasm"), "rb").read() for name in ("quickjs", "python")}
    modules = {}
    compile_ms, modules["python"] = timed(lambda: wasmtime.Module(eng, sources["python"]))
    figure("compile_py_26mb_cold", compile_ms, "ms")
    no_epoch_ms, _ = timed(lambda: wasmtime.Module(engine(epoch=False), sources["python"]))
    figure("compile_py_26mb_cold_without_epoch_checks", no_epoch_ms, "ms")
    modules["quickjs"] = wasmtime.Module(eng, sources["quickjs"])

    for name, program, argv, lines in CASES:
        module = modules[program]
        for _ in range(2):
            got = run(eng, linker, module, argv)
            if got != lines:
                sys.exit(f"{name}: {got} lines of output, expected {lines}")
        times = [timed(lambda: run(eng, linker, module, argv))[0] for _ in range(REPEATS)]
        figure(name, statistics.median(times), "ms")


if __name__ == "__main__":
    main()
