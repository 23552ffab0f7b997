"""A torchrun worker that writes its pid to ``<out>/pid<rank>`` and then never ends."""

import os
import sys
import time

if __name__ == "__main__":
    out = sys.argv[1]
    path = os.path.join(out, f"pid{os.environ['RANK']}")
    with open(path + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    while True:
        time.sleep(1)
