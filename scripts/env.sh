# Sourced by the Makefile and scripts: makes the venv's libtorch known to tch builds and to
# every program that runs (cargo test, examples, C tests, Python).
_bfl_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LIBTORCH_USE_PYTORCH=1
export PYTHON_SYS_EXECUTABLE="$_bfl_root/.venv/bin/python"
export VIRTUAL_ENV="$_bfl_root/.venv"
export PATH="$_bfl_root/.venv/bin:$_bfl_root/.build/tools/bin:$PATH"
_bfl_torch_lib=$(ls -d "$_bfl_root"/.venv/lib/python3*/site-packages/torch/lib 2>/dev/null | head -1)
if [ -n "$_bfl_torch_lib" ]; then
  export LD_LIBRARY_PATH="$_bfl_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
unset _bfl_root _bfl_torch_lib
