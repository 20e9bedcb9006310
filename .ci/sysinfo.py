"""Print what decides the last bits of a float result here: torch and its BLAS, threads, CPU, numeric env vars.

Called by `make test` before the suite, so a failure on another processor can be diagnosed from the CI log alone.
"""

from __future__ import annotations

import os
import platform
import re


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return platform.processor() or platform.machine()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    simd = sorted(f for f in (flags.group(1).split() if flags else []) if re.fullmatch(r"avx\w*|fma|sse4_2|amx\w*", f))
    return f"{model.group(1).strip() if model else platform.machine()} (flags: {' '.join(simd) or 'none found'})"


def main() -> None:
    import numpy as np
    import torch

    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    lapack = re.search(r"LAPACK_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([^\n]+)", config)
    print("platform info (decides the last bits of float results)")
    print(f"  python {platform.python_version()}  numpy {np.__version__}  torch {torch.__version__}")
    print(f"  torch BLAS {blas.group(1) if blas else '?'}, LAPACK {lapack.group(1) if lapack else '?'}"
          + (f", MKL {mkl.group(1).strip()}" if mkl else ""))
    print(f"  torch CPU capability {torch.backends.cpu.get_cpu_capability()}, intra-op threads "
          f"{torch.get_num_threads()}, inter-op threads {torch.get_num_interop_threads()}")
    print(f"  CPU {cpu_model()}; {os.cpu_count()} logical cores")
    numeric_env = {k: v for k, v in sorted(os.environ.items())
                   if k.startswith(("OMP_", "MKL_", "OPENBLAS_", "ATEN_", "KMP_", "GOTO_"))}
    print(f"  numeric env: {numeric_env or 'none set'}")


if __name__ == "__main__":
    main()
