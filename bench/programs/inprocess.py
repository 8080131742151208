"""Figures of bench/programs.exs, measured again in-process by wasmtime-py: a baseline of
in-process Wasm on the machine and in the minute of the port's own figures.

    python inprocess.py CACHE REPEATS NAME...

Each NAME is a figure of bench/programs.exs (`js_sort_10000_print`, `py_empty_program`,
`compile_py_26mb_cold`, ...); CACHE holds the programs (bench/programs/fetch.sh), and
their compiled code for later runs. wasmtime-py has the settings the port's default
engine gives Wasm code: Cranelift's `none` optimization level (the default of
`Wasmex.EngineConfig`, as of Wasmex 0.9.1) and epoch interruption on, with a deadline
that never comes. A program's output goes to a file, the nearest in-process sink
wasmtime-py has. Prints one line per figure, `inprocess_NAME median unit`.
"""

import os
import statistics
import sys
import tempfile
import time

import wasmtime

CACHE, REPEATS, NAMES = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
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


def compiled(eng, program):
    """The program compiled for `eng`, from the cache after the first time."""
    path = os.path.join(CACHE, f"inprocess-{program}-wasmtime{wasmtime_version()}-none.cwasm")
    if os.path.exists(path):
        return wasmtime.Module.deserialize_file(eng, path)
    module = wasmtime.Module(eng, source(program))
    with open(path + ".part", "wb") as out:
        out.write(module.serialize())
    os.replace(path + ".part", path)
    return module


def source(program):
    with open(os.path.join(CACHE, f"{program}.wasm"), "rb") as f:
        return f.read()


def wasmtime_version():
    from importlib.metadata import version

    return version("wasmtime")


def main():
    eng = engine()
    linker = wasmtime.Linker(eng)
    linker.define_wasi()
    if "compile_py_26mb_cold" in NAMES:
        py = source("python")
        figure("compile_py_26mb_cold", timed(lambda: wasmtime.Module(eng, py))[0], "ms")
        no_epoch = engine(epoch=False)
        no_epoch_ms = timed(lambda: wasmtime.Module(no_epoch, py))[0]
        figure("compile_py_26mb_cold_without_epoch_checks", no_epoch_ms, "ms")

    for name, program, argv, lines in CASES:
        if name not in NAMES:
            continue
        module = compiled(eng, program)
        for _ in range(2):
            got = run(eng, linker, module, argv)
            if got != lines:
                sys.exit(f"{name}: {got} lines of output, expected {lines}")
        times = [timed(lambda: run(eng, linker, module, argv))[0] for _ in range(REPEATS)]
        figure(name, statistics.median(times), "ms")


if __name__ == "__main__":
    main()
