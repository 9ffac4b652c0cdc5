"""The notebook fence: kernel mechanisms that keep a notebook run inside its own run.

A run is three processes. The handler starts the LAUNCHER (`python -c "...fence import launch;
launch()" <spec JSON>`: this module, trusted, the handler's user, nothing of the notebook has run
yet); the launcher forks the NOTEBOOK process, which builds the fence on itself and then execs the
notebook runner (functions.notebooks_api). The launcher stays outside the fence and supervises:

- the wall-clock timeout and the output cap (the notebook's stdout is a pipe the launcher copies to
  the output file, so output beyond the cap is never stored: the run is stopped there);
- no descendant survives: the launcher is a child subreaper (PR_SET_CHILD_SUBREAPER: every orphan
  of the notebook's tree becomes its child), the notebook leads a process group its descendants
  cannot leave (setsid/setpgid refused by seccomp), and at the end the launcher kills that group and
  every child it has, level by level, and reaps them all, before it answers. Where allowed (root
  with CAP_SYS_ADMIN) the notebook is also the first process of a new PID namespace, so the kernel
  kills everything in it when the notebook exits. The notebook dies with the launcher
  (PR_SET_PDEATHSIG) and the handler kills both groups if the launcher stops answering.

What the notebook process builds on itself before exec (each where the kernel offers it;
`probe_main()` finds out once per handler process, and the handler decides what a missing part means):
- rlimits: address space, file size, CPU seconds, no core dumps, and a process count: per user for
  the kernel, so a root handler drops the notebook to a uid of its own per run slot (NOTEBOOK_UID_BASE
  + slot; only CAP_DAC_READ_SEARCH is kept, where the handler has it and Landlock is on, so the
  interpreter is readable wherever root installed it while Landlock decides what is read), and a
  non-root handler allows its user's current task count plus the limit;
- Landlock (filesystem, ABI >= 1): read+execute only where Python and its libraries live, read-only
  the package and the run's code, read-write only the run's work directory, /dev/null, the process's
  own /proc entry; nothing else (no database file, no /proc of other processes, no other run);
- Landlock network (ABI >= 4): TCP connect only to the database port of the run, no TCP bind;
- Landlock scopes (ABI >= 6): no signals to, no abstract unix sockets of, processes outside;
- seccomp (built with libseccomp through pyseccomp, once, in the handler; each run loads the
  compiled BPF with one prctl): sockets only AF_INET/AF_INET6 stream over TCP (no UDP, raw, netlink,
  unix), no listen, no TCP fast-open (a connect Landlock does not see), no io_uring (sockets without
  socket()), no new namespaces, mounts, ptrace, bpf, keyrings, no setsid/setpgid. Where nothing else
  keeps signals in (same uid as the handler, no PID namespace, Landlock ABI < 6), also signals only
  to the notebook process itself: the filter is compiled with a placeholder pid (SELF_PID) that the
  notebook process replaces with its own pid before loading it (`bind_pid`).

The launcher also measures the run every POLL_S seconds (it can: it is outside the fence, the
handler's user or root): the bytes its work directory holds plus files it keeps open after unlinking
them (RLIMIT_FSIZE is per file: many files fill the disk), and the memory its processes hold
together (RLIMIT_AS is per process, times the process limit); past either cap it stops the run.

Landlock is called through its three syscalls with ctypes: no maintained Python binding covers
network rules and scopes (PyPI's `landlock` 1.0.0.dev5 is an alpha, filesystem rules only).
The launcher's path through this module uses only C-level standard modules (no dataclasses, no
pyseccomp, no site-packages: it runs with `python -S`): it starts once per run and should start fast.
The typed spec is built by stages/dbhandler/sandbox.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import resource
import select
import signal
import stat
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the launcher does not import typing
    from typing import Any

    Spec = dict[str, Any]  # the launcher's input: built and typed by sandbox.LaunchSpec, JSON on its argv

LAUNCHER = "from functions.stages.dbhandler.fence import launch; launch()"
EXIT_FENCE = 71  # EX_OSERR: the notebook process could not build its fence (the reason is on the status pipe)
POLL_S = 0.2  # the launcher measures the run's disk and memory this often
SELF_PID = 0x3A5C0F0E  # placeholder in the signal rules, replaced by the notebook's pid (no real pid is this large)
NOTEBOOK_UID_BASE = 65000  # root handlers: slot k runs as uid/gid 65000+k (unused by distributions: Debian reserves 65000-65533)

# ------------------------------------------------------------------------------- Landlock

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # one number on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
_FS_ABI1 = (1 << 13) - 1  # execute ... make_sym: every right of ABI 1
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
_FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV  # rights a rule on a file may carry
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

READ = FS_READ_FILE | FS_READ_DIR
READ_EXEC = READ | FS_EXECUTE


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in linux/landlock.h
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: Any) -> int:
    result = int(_libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def landlock_abi() -> tuple[int, str]:
    """(ABI version, "") or (0, why not): ENOSYS = kernel without it, EOPNOTSUPP = disabled at boot."""
    try:
        return _syscall(_SYS_CREATE_RULESET, ctypes.c_void_p(None), ctypes.c_size_t(0),
                        ctypes.c_uint32(_CREATE_RULESET_VERSION)), ""
    except OSError as exc:
        why = {errno.ENOSYS: "the kernel has no Landlock (Linux >= 5.13 needed)",
               errno.EOPNOTSUPP: "Landlock is built in but not enabled (add it to the lsm= boot parameter)",
               errno.EPERM: "the Landlock syscalls are refused (a seccomp profile of the container?)"}
        return 0, why.get(exc.errno or 0, f"landlock_create_ruleset: {exc.strerror}")


def fs_rights(abi: int) -> int:
    """Every filesystem right the kernel's ABI knows (all of them are handled: what is not allowed is denied)."""
    rights = _FS_ABI1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def landlock_restrict(abi: int, read_exec: list[str], read: list[str], read_write: list[str], devices: list[str],
                      tcp_ports: list[int]) -> list[str]:
    """Restrict this process (and all it execs or forks) to these paths and TCP ports; every other right is denied.

    read_exec: read + execute; read: read-only; read_write: all but execute; devices: read + write +
    truncate (/dev/null). Returns the paths that do not exist (skipped). Needs no_new_privs.
    """
    handled = fs_rights(abi)
    attr = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # older kernels know a shorter struct
    ruleset = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    skipped: list[str] = []
    try:
        for paths, rights in ((read_exec, READ_EXEC), (read, READ), (read_write, handled & ~FS_EXECUTE),
                              (devices, FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE)):
            for path in paths:
                if not _allow(ruleset, path, rights & handled):
                    skipped.append(path)
        for port in tcp_ports if abi >= 4 else ():
            rule = _NetPortAttr(NET_CONNECT_TCP, port)
            _syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_NET_PORT), ctypes.byref(rule), ctypes.c_uint32(0))
        _syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return skipped


def _allow(ruleset: int, path: str, rights: int) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_ONLY
        rule = _PathBeneathAttr(rights, fd)
        _syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)
    return True


def system_paths(prefixes: list[str]) -> tuple[list[str], list[str]]:
    """(read+execute, read-only) paths an interpreter with these prefixes needs to start and import.

    The minimum found by running the runner under the fence: the interpreter's prefixes (stdlib,
    site-packages: crate, certifi), the system's libraries and executables, and the few /etc files
    the C library and TLS read (loader cache, name service, time zone, CA certificates).
    """
    read_exec = sorted({os.path.realpath(p) for p in prefixes if p} | {"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"})
    read = ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/hosts",
            "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/passwd", "/etc/group", "/etc/ssl",
            "/etc/ca-certificates", "/etc/pki", "/dev/urandom", "/dev/random", "/dev/zero",
            "/sys/devices/system/cpu"]
    return read_exec, read


def beneath(path: str, roots: list[str]) -> str | None:
    """The first of `roots` that `path` (resolved) lies in, or None."""
    real = os.path.realpath(path)
    for root in roots:
        r = os.path.realpath(root)
        if real == r or real.startswith(r.rstrip("/") + "/"):
            return root
    return None


# -------------------------------------------------------------------------------- seccomp


def seccomp_filter(signals: bool = False) -> Any:
    """The notebook's syscall filter (pyseccomp.SyscallFilter): what Landlock cannot see, refused with EPERM.

    `signals`: also refuse signals to any process but SELF_PID (see bind_pid), for runs where neither
    another uid, a PID namespace nor Landlock's signal scope keeps a notebook from killing the handler.
    """
    import socket

    import pyseccomp as sc  # ctypes wrapper over libseccomp (untyped: Any)

    deny = sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(sc.ALLOW)
    # sockets: AF_INET/AF_INET6, SOCK_STREAM, protocol 0 or TCP. Landlock rules TCP only.
    f.add_rule(deny, "socket", sc.Arg(0, sc.LT, socket.AF_INET))  # AF_UNSPEC, AF_UNIX (abstract sockets too)
    for family in range(socket.AF_INET + 1, socket.AF_INET6):
        f.add_rule(deny, "socket", sc.Arg(0, sc.EQ, family))
    f.add_rule(deny, "socket", sc.Arg(0, sc.GT, socket.AF_INET6))  # netlink, packet, vsock, ...
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_RDM, socket.SOCK_SEQPACKET, 6, 10):  # 6 DCCP, 10 PACKET
        f.add_rule(deny, "socket", sc.Arg(1, sc.MASKED_EQ, 0xF, kind))
    for proto in range(1, socket.IPPROTO_TCP):
        f.add_rule(deny, "socket", sc.Arg(2, sc.EQ, proto))
    f.add_rule(deny, "socket", sc.Arg(2, sc.GT, socket.IPPROTO_TCP))  # SCTP, MPTCP, ...
    msg_fastopen = 0x20000000
    f.add_rule(deny, "sendto", sc.Arg(3, sc.MASKED_EQ, msg_fastopen, msg_fastopen))
    f.add_rule(deny, "sendmsg", sc.Arg(2, sc.MASKED_EQ, msg_fastopen, msg_fastopen))
    f.add_rule(deny, "sendmmsg", sc.Arg(3, sc.MASKED_EQ, msg_fastopen, msg_fastopen))
    for name in ("listen", "setsid", "setpgid", "io_uring_setup", "io_uring_enter", "io_uring_register", "unshare",
                 "setns", "mount", "umount2", "pivot_root", "chroot", "ptrace", "process_vm_readv",
                 "process_vm_writev", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
                 "open_by_handle_at", "name_to_handle_at", "fsopen", "fsmount", "move_mount", "open_tree"):
        f.add_rule(deny, name)
    for flag in (0x10000000, 0x20000000, 0x40000000, 0x00020000, 0x04000000, 0x08000000, 0x02000000):
        f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))  # CLONE_NEW{USER,PID,NET,NS,UTS,IPC,CGROUP}
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # its flags are behind a pointer: the C library falls back to clone
    if signals:
        _signal_rules(f, sc, deny)
    return f


def _signal_rules(f: Any, sc: Any, deny: Any) -> None:
    """Signals only to SELF_PID (one comparison per argument and rule: "> pid" and "< pid" refused).

    kill(0)/kill(-pgid)/kill(-1) and a notebook's own children by pid are refused too: a child cannot
    be told apart from the handler by its number. tgkill/rt_(tg)sigqueueinfo name the thread group
    first (the kernel checks the thread belongs to it); tkill and pidfd_send_signal name no group and
    are refused; SIGIO/SIGURG ownership (F_SETOWN, F_SETOWN_EX, FIOSETOWN, SIOCSPGRP) would let the
    kernel signal any pid on the notebook's behalf.
    """
    for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        f.add_rule(deny, name, sc.Arg(0, sc.GT, SELF_PID))
        f.add_rule(deny, name, sc.Arg(0, sc.LT, SELF_PID))
    for name in ("tkill", "pidfd_send_signal"):
        f.add_rule(deny, name)
    for command in (8, 15):  # F_SETOWN, F_SETOWN_EX
        f.add_rule(deny, "fcntl", sc.Arg(1, sc.EQ, command))
    for request in (0x8901, 0x8902):  # FIOSETOWN, SIOCSPGRP
        f.add_rule(deny, "ioctl", sc.Arg(1, sc.EQ, request))


def bind_pid(program: bytes, pid: int) -> bytes:
    """The program with every jump constant SELF_PID replaced by `pid` (struct sock_filter: u16 code, u8, u8, u32 k).

    Done by the notebook process on itself before loading: the filter is compiled once per handler,
    and the pid exists only after the fork. Only BPF_JMP|BPF_K instructions are touched.
    """
    out = bytearray(program)
    for at in range(0, len(out) - 7, 8):
        code = out[at] | out[at + 1] << 8 if sys.byteorder == "little" else out[at] << 8 | out[at + 1]
        if code & 0x07 == 0x05 and code & 0x08 == 0 and int.from_bytes(out[at + 4:at + 8], sys.byteorder) == SELF_PID:
            out[at + 4:at + 8] = pid.to_bytes(4, sys.byteorder)
    return bytes(out)


def seccomp_program(signals: bool = False) -> bytes:
    """The filter compiled to BPF for this machine (struct sock_filter[]): built once by the handler, loaded per run."""
    import tempfile

    with tempfile.TemporaryFile() as fh:
        seccomp_filter(signals).export_bpf(fh)
        fh.seek(0)
        return fh.read()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_load(program: bytes) -> None:
    """Install a BPF program as this process's seccomp filter (inherited by every child; needs no_new_privs)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    _prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog))


# ------------------------------------------------------------------------- process helpers

_PR_SET_PDEATHSIG = 1
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_DROP = 24
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE = 47, 2
_CAP_DAC_READ_SEARCH = 2
_CLONE_NEWPID = 0x20000000


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    """prctl(2) with every argument passed as unsigned long (it is variadic: no promotion guesses)."""
    if _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def unshare_pid() -> None:
    """The caller's NEXT child is the first process of a new PID namespace (CAP_SYS_ADMIN needed)."""
    if _libc.unshare(ctypes.c_int(_CLONE_NEWPID)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWPID): {os.strerror(err)}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def _capabilities() -> tuple[ctypes.Array[_CapData], _CapHeader]:
    header, data = _CapHeader(_CAP_V3, 0), (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    return data, header


def has_capability(cap: int) -> bool:
    data, _ = _capabilities()
    return bool(data[cap // 32].permitted & (1 << (cap % 32)))


def drop_to(uid: int, keep_read_search: bool) -> None:
    """Become uid:uid with no groups; keep only CAP_DAC_READ_SEARCH (ambient, survives exec) when asked."""
    if keep_read_search:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as fh:
            last = int(fh.read())
        for cap in range(last + 1):
            if cap != _CAP_DAC_READ_SEARCH:
                _prctl(_PR_CAPBSET_DROP, cap)
        _prctl(_PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if keep_read_search:
        data, header = _capabilities()
        bit = 1 << _CAP_DAC_READ_SEARCH
        data[0].effective = data[0].permitted = data[0].inheritable = bit
        data[1].effective = data[1].permitted = data[1].inheritable = 0
        if _libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset")
        _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, _CAP_DAC_READ_SEARCH)


def user_tasks(uid: int) -> int:
    """Tasks (threads included, as RLIMIT_NPROC counts them) of real uid `uid` visible in /proc."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as fh:
                text = fh.read()
        except OSError:
            continue
        fields = dict(line.split(b":", 1) for line in text.splitlines() if b":" in line)
        if int(fields.get(b"Uid", b"-1").split()[0]) == uid:
            count += int(fields.get(b"Threads", b"1").strip())
    return count


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (zombies included): a scan of /proc, unfenced code only."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                text = fh.read()
        except OSError:
            continue
        after_name = text[text.rfind(b")") + 2:].split()  # the name may hold spaces and parentheses
        if len(after_name) > 1 and int(after_name[1]) == pid:
            found.append(int(entry))
    return found


# --------------------------------------------------------------------------- the launcher


def launch() -> None:
    """Entry point of the launcher process (argv[1] = the spec JSON). Reports on spec["status_fd"], JSON lines."""
    spec: Spec = json.loads(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    if spec["pid_namespace"]:
        try:
            unshare_pid()
        except OSError as exc:
            _report(spec["status_fd"], {"fence_error": str(exc)})
            os._exit(0)
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.dup2(out_w, 1)
        os.close(out_w)
        _notebook(spec)  # never returns
    os.close(out_w)
    with contextlib.suppress(OSError):  # the child does the same: whichever runs first wins
        os.setpgid(pid, pid)
    _report(spec["status_fd"], {"pid": pid})
    outcome = _supervise(pid, out_r, spec["limits"], spec["work"])
    _report(spec["status_fd"], outcome)
    os._exit(0)


def _report(fd: int, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the handler gone: nobody to tell
        os.write(fd, json.dumps(message).encode() + b"\n")


def _notebook(spec: Spec) -> None:
    """In the forked notebook process: build the fence on itself, then exec the runner. Never returns."""
    try:
        os.setpgid(0, 0)
        os.set_inheritable(spec["status_fd"], False)  # reported on until exec, closed by it
        lim, uid = spec["limits"], spec["uid"]
        resource.setrlimit(resource.RLIMIT_AS, (lim["memory"], lim["memory"]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size"], lim["file_size"]))
        resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1))
        nproc = lim["processes"] if uid is not None else user_tasks(os.getuid()) + lim["processes"]
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if uid is not None:
            drop_to(uid, spec["keep_read_search"])
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        if spec["landlock"]:
            landlock_restrict(**spec["landlock"])
        if spec["seccomp"]:
            seccomp_load(bind_pid(bytes.fromhex(spec["seccomp"]), os.getpid()))
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it
        if os.getppid() <= 1 and not spec["pid_namespace"]:
            raise OSError("the launcher is gone")
        os.chdir(spec["work"])
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    except BaseException as exc:  # noqa: BLE001 - any failure means no notebook code runs
        _report(spec["status_fd"], {"fence_error": f"{type(exc).__name__}: {exc}"})
    os._exit(EXIT_FENCE)


def _supervise(pid: int, out_r: int, lim: dict[str, Any], work: str) -> dict[str, Any]:
    """Copy stdout up to the cap and wait for the notebook until the timeout, measuring its disk and memory
    every POLL_S; then leave nothing alive."""
    try:  # readable when the notebook exits; it stays unreaped (its pid is the group id)
        pidfd = os.pidfd_open(pid)
    except OSError:  # Linux < 5.3: look every 50 ms, still without reaping
        pidfd = -1
    deadline = time.monotonic() + lim["timeout_s"]
    next_poll = time.monotonic() + POLL_S
    written, reason, reading = 0, "exited", True
    peak: dict[str, int] = {"disk_bytes": 0, "memory_bytes": 0}
    try:
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                reason = "timeout"
                break
            if now >= next_poll:
                over = _over_caps(pid, work, lim, peak)
                if over:
                    reason = over
                    break
                next_poll = time.monotonic() + POLL_S
            watched = ([pidfd] if pidfd >= 0 else []) + ([out_r] if reading else [])
            wait = min(remaining, max(next_poll - time.monotonic(), 0.0))
            ready, _, _ = select.select(watched, [], [], wait if pidfd >= 0 else min(wait, 0.05))
            if out_r in ready:
                got = _copy(out_r, lim["max_output"] - written)
                if got < 0:
                    reason = "output"
                    break
                written += got
                reading = got > 0
            if pidfd in ready if pidfd >= 0 else os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                break
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    _kill_all(pid)
    while reason == "exited" and reading:  # the writers are dead now: what they left in the pipe, to EOF
        got = _copy(out_r, lim["max_output"] - written)
        reason = "output" if got < 0 else reason
        written += max(got, 0)
        reading = got > 0
    os.close(out_r)
    _, status, usage = os.wait4(pid, 0)
    # CPU time tells a CPU-limit kill apart: PID 1 of a namespace ignores SIGXCPU and dies at the hard limit
    result: dict[str, Any] = {"reason": reason, "output_bytes": written,
                              "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), **peak}
    if os.WIFSIGNALED(status):
        result["signal"] = os.WTERMSIG(status)
    else:
        result["exit"] = os.WEXITSTATUS(status)
    return result


def _over_caps(leader: int, work: str, lim: dict[str, Any], peak: dict[str, int]) -> str:
    """"disk" or "memory" when the run holds more than its cap (peaks noted in `peak`), else ""."""
    pids = run_processes(os.getpid())
    disk = work_usage(work) + unlinked_open_bytes(pids)
    memory = sum(resident_bytes(p) for p in pids)
    peak["disk_bytes"], peak["memory_bytes"] = max(peak["disk_bytes"], disk), max(peak["memory_bytes"], memory)
    if disk > lim["max_disk"]:
        return "disk"
    if memory > lim["max_memory"]:
        return "memory"
    return ""


_ENTRY_BYTES = 4096  # every file or directory counts at least one block: a million empty files are not free


def work_usage(root: str) -> int:
    """Bytes the work directory holds (allocated blocks, each entry at least _ENTRY_BYTES; hard links once).

    A directory the notebook made unlistable is opened up first (the launcher owns it, or is root).
    """
    total, seen, stack = 0, set(), [root]
    while stack:
        path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except PermissionError:
            try:
                os.chmod(path, 0o700)
                entries = list(os.scandir(path))
            except OSError:
                continue
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += max(st.st_blocks * 512, _ENTRY_BYTES)
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
    return total


def unlinked_open_bytes(pids: list[int]) -> int:
    """Bytes of regular files the run's processes hold open with no name left (deleted files, memfds)."""
    total, seen = 0, set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 0 and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(pid: int) -> int:
    """Memory a process holds: its proportional set size (shared pages split among their users), else its RSS."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def run_processes(launcher: int) -> list[int]:
    """Every descendant of the launcher (one scan of /proc): the notebook, its group, and orphans it adopted."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                text = fh.read()
        except OSError:
            continue
        after_name = text[text.rfind(b")") + 2:].split()
        if len(after_name) > 1:
            parents.setdefault(int(after_name[1]), []).append(int(entry))
    found, stack = [], list(parents.get(launcher, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(parents.get(pid, []))
    return found


def _copy(fd: int, room: int) -> int:
    """One read from the pipe to stdout: bytes copied, 0 at EOF, -1 when it would pass the cap."""
    chunk = os.read(fd, 1 << 16)
    if len(chunk) > room:
        return -1
    view = memoryview(chunk)
    while view:
        view = view[os.write(1, view):]
    return len(chunk)


def _kill_all(leader: int) -> None:
    """Kill the notebook's group and every child of the launcher, level by level; reap all but the leader.

    The launcher is a subreaper, so every descendant whose parent dies becomes its child: when it has
    no child left but the (unreaped) leader, nothing of the run is alive.
    """
    me = os.getpid()
    for _ in range(10_000):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, signal.SIGKILL)
        others = [p for p in children_of(me) if p != leader]
        if not others:
            return
        for child in others:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, os.WNOHANG)
        time.sleep(0.001)


# ------------------------------------------------------------------------------ the probe


def probe_main() -> None:
    """`python -c "...fence import probe_main; probe_main()" <notebook python>`: prints what can be built, JSON.

    Each mechanism is tried for real in a forked child (it restricts itself, not this process).
    """
    python = sys.argv[1]
    abi, abi_error = landlock_abi()
    caps: dict[str, Any] = {"landlock_abi": abi, "landlock_error": abi_error, "root": os.geteuid() == 0}
    if abi:
        caps["landlock_abi"], caps["landlock_error"] = _in_child(lambda: _probe_landlock(abi), abi)
    try:
        program = seccomp_program()
    except Exception as exc:  # noqa: BLE001 - no libseccomp, no pyseccomp, a syscall it does not know
        caps["seccomp"], caps["seccomp_error"] = False, f"{type(exc).__name__}: {exc}"
    else:
        ok, caps["seccomp_error"] = _in_child(lambda: _probe_seccomp(program), True)
        caps["seccomp"] = bool(ok)
    if caps["root"]:
        caps["read_search"] = has_capability(_CAP_DAC_READ_SEARCH)
        pid_ok, caps["pid_namespace_error"] = _in_child(_probe_pid_namespace, True)
        caps["pid_namespace"] = bool(pid_ok)
        keep = bool(caps["read_search"] and caps["landlock_abi"])
        drop_ok, caps["uid_drop_error"] = _in_child(lambda: _probe_uid_drop(python, keep), True)
        caps["uid_drop"] = bool(drop_ok)
    else:
        caps["pid_namespace_error"] = "needs CAP_SYS_ADMIN (the handler is not root)"
    caps["prefixes"] = _prefixes(python)
    print(json.dumps(caps))


def _in_child(check: Any, value: Any) -> tuple[Any, str]:
    """Run check() in a forked child (it may restrict itself); (value, "") when it exits 0, else (0, its reason)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            check()
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(w, f"{type(exc).__name__}: {exc}".encode()[:2000])
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        reason = fh.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return value, ""
    return 0, reason or f"the check died (status {status})"


def _probe_landlock(abi: int) -> None:
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    landlock_restrict(abi, ["/usr"], [], [], [], [1])
    try:
        open("/proc/self/status", "rb").close()  # noqa: SIM115 - must fail
    except PermissionError:
        return
    raise OSError("Landlock did not restrict the process")


def _probe_seccomp(program: bytes) -> None:
    import socket

    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    seccomp_load(program)
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
    except PermissionError:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        return
    raise OSError("the seccomp filter did not refuse a UDP socket")


def _probe_pid_namespace() -> None:
    unshare_pid()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if os.getpid() == 1 else 1)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OSError("the first child was not pid 1")


def _probe_uid_drop(python: str, keep_read_search: bool) -> None:
    """As a notebook will: drop to the first slot's uid and start the notebook interpreter."""
    drop_to(NOTEBOOK_UID_BASE, keep_read_search)
    pid = os.fork()
    if pid == 0:
        os.execv(python, [python, "-S", "-c", "pass"])
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OSError(f"uid {NOTEBOOK_UID_BASE} cannot start {python} (status {status}): install Python where "
                      "other users may read it")


def _prefixes(python: str) -> list[str]:
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})
    import subprocess

    out = subprocess.run([python, "-S", "-c", "import sys, json; print(json.dumps(sorted({sys.prefix, sys.base_prefix,"  # noqa: S603
                          " sys.exec_prefix, sys.base_exec_prefix})))"], capture_output=True, check=True, timeout=30)
    return [str(p) for p in json.loads(out.stdout)]
