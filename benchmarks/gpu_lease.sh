#!/usr/bin/env bash
# The GPU figures of issue 13 in one short run on a lent NVIDIA machine (the `device` tool:
# 15 minutes in all, start and transfers included), from the repository root:
#
#     bash benchmarks/gpu_lease.sh OUT_DIR
#
# Expects vbg's runtime packages importable (there: the machine's torch/numpy/opencv/CUDA wheels,
# plus onnxruntime-gpu, av and pyvirtualcam carried as wheels and put first on PYTHONPATH).
# Each step is bounded by `timeout` and writes into OUT_DIR as it goes, so a step that fails or
# runs long costs only itself. Order = importance: what vbg doctor says, inference on the GPU
# (RMBG-1.4 at 512 and 1024: the targets), the live filter with a fresh mask on every
# frame, vbg process at 1080p, then the whole quick benchmark with --gpu.
set -u
out=${1:?usage: gpu_lease.sh OUT_DIR}
mkdir -p "$out/b"
export PYTHONUNBUFFERED=1
step() {  # step NAME SECONDS CMD...: run, log to OUT/NAME.log, note the exit status and time
    local name=$1 secs=$2; shift 2
    local t0=$SECONDS
    timeout -k 5 "$secs" "$@" > "$out/$name.log" 2>&1
    echo "$name: exit $? in $((SECONDS - t0)) s" | tee -a "$out/steps.txt"
}
step machine 30 bash -c 'nvidia-smi; nvidia-smi -L; nproc; python3 -V; python3 -c "import onnxruntime as o, av, cv2, numpy, torch; print(o.__version__, o.__file__, o.get_available_providers(), av.__version__, cv2.__version__, numpy.__version__, torch.__version__)"'
step doctor 60 python3 -m vbg doctor
step probe 60 python3 -c "from benchmarks.gpu import probe; print('cuda:', probe('cuda')); print('tensorrt:', probe('tensorrt'))"
if ! python3 -c "import sys; from benchmarks.gpu import probe; sys.exit(probe('cuda') is not None)" > /dev/null 2>&1; then
    # vbg's own loading failed: say so, and try once more with every nvidia/ wheel folder on the
    # loader path, so the rest of the run still measures the GPU.
    libs=$(python3 -c "import glob, os, sys; print(':'.join(sorted({os.path.dirname(p) for d in sys.path for p in glob.glob(os.path.join(d, 'nvidia', '**', 'lib*.so*'), recursive=True)})))")
    export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "cuda not usable as installed; the rest runs with LD_LIBRARY_PATH=$LD_LIBRARY_PATH" | tee -a "$out/steps.txt"
    step probe_ld 60 python3 -c "from benchmarks.gpu import probe; print('cuda:', probe('cuda'))"
fi
step inference 200 python3 -m benchmarks.inference --device cuda,tensorrt --sizes 256,512,1024 --repeat 50 --int8 '' --no-torch --out "$out/b"
step live_cuda 150 python3 -m benchmarks.live --device cuda --seconds 10 --rmbg-sizes 512 --skip 1 --out "$out/b"
step offline_cuda 150 python3 -m benchmarks.offline --device cuda --sizes 512 --source 1920x1080 --frames 150 --qualities balanced --encoders x264,nvenc --out "$out/b"
step live_trt 30 python3 -m benchmarks.live --device tensorrt --out "$out/b"
step offline_trt 30 python3 -m benchmarks.offline --device tensorrt --out "$out/b"
step quick_gpu 200 python3 -m benchmarks --quick --gpu --out "$out/q"
