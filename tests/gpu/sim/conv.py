"""conv.py OUT_DIR FILE.cu... - copies CUDA files of common/cuda as C++ for
the CPU simulation (tests/gpu/sim/run.sh): each launch
kernel<<<grid, block, shared, stream>>>(args); becomes
sim_launch(grid, block, shared, [=]{ kernel(args); }); and the kernels'
extern __shared__ array becomes the simulator's. A file without launches
(train_opt.cu: host code only) is copied with its include changed."""
import os
import re
import sys

out, files = sys.argv[1], sys.argv[2:]


def launch(m):
    kern, cfg, args = m.group(1), m.group(2), m.group(3)
    extra = ""
    while args.count("(") < args.count(")"):  # the launch sat inside a macro call
        i = args.rindex(")")
        args, extra = args[:i] + args[i + 1:], extra + ")"
    parts = [p.strip() for p in re.split(r",(?![^()]*\))", cfg)]
    return "sim_launch(%s, %s, %s, [=]{ %s(%s); })%s;" % (parts[0], parts[1], parts[2], kern, args, extra)


for path in files:
    name = os.path.basename(path)
    s = open(path).read()
    if '#include "train_internal.cuh"' not in s:
        sys.exit("conv.py: %s: does not include train_internal.cuh" % name)
    # the simulation's train_internal.cuh first: it defines the CUDA words the headers meet
    s = '#include "train_internal.cuh"\n' + s
    s = re.sub(r"extern __shared__ (float|double|char|int) sh\[\];", "", s)
    had = "<<<" in s
    s, n = re.subn(r"([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\((.*?)\);", launch, s, flags=re.S)
    if "<<<" in s or (had and n == 0):
        sys.exit("conv.py: %s: a launch was not converted" % name)
    open("%s/%s" % (out, name.replace(".cu", ".cpp")), "w").write(s)
