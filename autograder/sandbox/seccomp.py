"""The system calls student code may not make, as a seccomp filter (libseccomp through ``pyseccomp``).

Built once in the fork server, loaded in every child after it dropped root, so
nothing the child runs (threads and forks included) can lift it.

>>> f = build()                       # doctest: +SKIP
>>> f.load()                          # in the child, after no_new_privs   # doctest: +SKIP
"""
from __future__ import annotations

import errno

#: Refused with EPERM: kernel keyrings (notes between submissions), namespaces and mounts (a way out of
#: the jail), tracing other processes and reading their memory, kernel-level programs and modules, and
#: interfaces that bypass seccomp (io_uring) or change the machine (clock, swap, reboot).
DENIED = (
    "keyctl", "add_key", "request_key",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "mount_setattr",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "open_by_handle_at", "name_to_handle_at",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
)
#: Must be refused, or there is no filter worth the name.
REQUIRED = ("keyctl", "add_key", "request_key", "unshare", "setns", "mount", "umount2", "pivot_root",
            "ptrace", "bpf", "perf_event_open", "userfaultfd")
CLONE_NEW = {"CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
             "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
             "CLONE_NEWNET": 0x40000000}


def build():
    """A ``pyseccomp.SyscallFilter`` that allows everything except :data:`DENIED` and new namespaces.

    Raises ``ImportError``/``RuntimeError`` where libseccomp is missing.
    """
    import pyseccomp as sc
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except (OSError, ValueError, RuntimeError):
            if name in REQUIRED:
                raise
    for flag in CLONE_NEW.values():      # clone(2) with any namespace flag
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, where a filter cannot look: say it does not exist, and the
    # C library falls back to clone(2), which the rules above check.
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    return f
