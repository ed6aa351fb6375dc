"""conv.py SRC_DIR OUT_DIR - copies common/cuda/train_fusion*.cu as C++ for
the CPU simulation (tests/gpu/sim/run.sh): each launch
kernel<<<grid, block, shared, stream>>>(args); becomes
sim_launch(grid, block, shared, [=]{ kernel(args); }); and the kernels'
extern __shared__ array becomes the simulator's."""
import re
import sys

src, out = sys.argv[1], sys.argv[2]


def launch(m):
    kern, cfg, args = m.group(1), m.group(2), m.group(3)
    extra = ""
    while args.count("(") < args.count(")"):  # the launch sat inside a macro call
        i = args.rindex(")")
        args, extra = args[:i] + args[i + 1:], extra + ")"
    parts = [p.strip() for p in re.split(r",(?![^()]*\))", cfg)]
    return "sim_launch(%s, %s, %s, [=]{ %s(%s); })%s;" % (parts[0], parts[1], parts[2], kern, args, extra)


for name in ["train_fusion.cu", "train_fusion_attn.cu"]:
    s = open("%s/%s" % (src, name)).read()
    s = s.replace('#include "bmcuda_fusion.h"', '#include "train_internal.cuh"\n#include "bmcuda_fusion.h"', 1)
    s = s.replace("extern __shared__ float sh[];", "")
    s, n = re.subn(r"([A-Za-z_][\w<>]*)<<<(.*?)>>>\((.*?)\);", launch, s, flags=re.S)
    if "<<<" in s or n == 0:
        sys.exit("conv.py: %s: a launch was not converted" % name)
    open("%s/%s" % (out, name.replace(".cu", ".cpp")), "w").write(s)
