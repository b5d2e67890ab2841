"""The installed programs' entry point: ``python -m lseg_ros.ros.launcher lseg_node ARGS``.

Importing a program's module imports torch and the models, which takes seconds; Ctrl-C in
that time would end in a KeyboardInterrupt traceback. Here it ends with one line, as Ctrl-C
during the node's own start-up does (runner.py). The generated wrappers in
``install/lib/lseg_ros/`` (CMakeLists.txt) call this module.
"""
import importlib
import sys

#: program name -> module with a ``main()`` that reads ``sys.argv``
PROGRAMS = {
    "lseg_node": "lseg_ros.ros.node",
    "lseg_lifecycle_node": "lseg_ros.ros.lifecycle",
    "camera_sim": "lseg_ros.ros.camera_sim",
    "overlay_recorder": "lseg_ros.ros.recorder",
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in PROGRAMS:
        given = repr(argv[0]) if argv else "nothing"
        print(f"lseg_ros launcher: unknown program {given}; accepted: {', '.join(PROGRAMS)}", file=sys.stderr)
        return 2
    program = argv[0]
    try:
        module = importlib.import_module(PROGRAMS[program])
    except KeyboardInterrupt:
        print(f"{program}: stopped during start-up", file=sys.stderr)
        return 0
    sys.argv = [program] + argv[1:]
    return module.main()


if __name__ == "__main__":
    sys.exit(main())
