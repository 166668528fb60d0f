"""Red team: each way a cheating student once fooled the grader (issue 10), tried again.

One grading run of lab 1 with two workers (real fork servers, real cgroups,
real SQLite) holds honest submissions that print private markers, and one
submission per attack:

1. copying the previous student (stack frames, every object, the whole memory);
2. walking the whole file system for solutions while a copy of the course sits in
   an unrelated folder;
3. heartbeat frames to beat the cell time-out;
4. kernel keyring notes between submissions, user namespaces and other refused calls;
5. many processes and memory across processes, next to honest neighbours;
6. a NaN in a frame.

Each earns nothing, leaks nothing, and every honest submission gets full marks.
Items 1-6 need the full sandbox and skip, saying why, where a part of it is missing.
Item 7 (NaN answers passing statistical checks) grades labs 5 and 7 with any isolation.
"""
from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
from pathlib import Path

import pytest

from autograder.grader import ROOT, grade, submission_seed
from autograder.sandbox import Limits

from ag_helpers import add_cell, isolation, lab, replace_solution, solved, student, write

LAB = "01_backprop"
TOKEN = secrets.token_hex(4).upper()
HONEST = [f"a{k}_honest" for k in range(1, 6)]

pytestmark = [pytest.mark.xdist_group(name="redteam")]


def private(kind: str, name: str) -> str:
    return f"PRIVATE-{kind}-{name}-{TOKEN}"


HONEST_EXTRA = """
print({out!r})
raise ValueError({err!r})
"""

# 1. Everything a child can reach of its own process: frames, every live object, all its memory.
SNOOP = r"""
import gc, re, sys, json
pattern = re.compile(b"PRIV" + b"ATE-(OUTPUT|ERROR)-a")
texts, answers = set(), []

def look(v):
    if isinstance(v, str) and pattern.search(v.encode(errors="ignore")):
        texts.add(v[:120])
    elif isinstance(v, (bytes, bytearray)) and pattern.search(bytes(v[:10**7])):
        texts.add(bytes(pattern.search(bytes(v)).group(0)).decode())

f = sys._getframe()
while f is not None:
    for v in list(f.f_locals.values()) + list(f.f_globals.values()):
        look(v)
    f = f.f_back
for o in gc.get_objects():
    if isinstance(o, dict):
        if o.get("status") == "ok" and "answer" in o:
            answers.append(o["answer"])
        for v in list(o.values()):
            look(v)
    elif isinstance(o, (list, tuple)):
        for v in o:
            look(v)
import ctypes
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)      # PR_SET_DUMPABLE: make /proc/self/mem ours to read again
regions = 0
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
    for line in maps:
        span, perms = line.split()[:2]
        lo, hi = (int(x, 16) for x in span.split("-"))
        if perms.startswith("rw") and hi - lo < 2**28:
            try:
                mem.seek(lo)
                m = pattern.search(mem.read(hi - lo))
            except (OSError, ValueError, OverflowError):
                continue
            regions += 1
            if m:
                texts.add(m.group(0).decode())
import autograder.sandbox.child as child
if answers:
    replay = iter(answers * 50)
    child.Child.run_probe = lambda self, j, steps, ns: {"ev": "probe", "j": j, "phase": "end", "status": "ok",
                                                        "message": "", "answer": next(replay), "t": 0.0}
raise RuntimeError("SNOOP " + json.dumps({"texts": sorted(texts), "answers": len(answers), "regions": regions}))
"""

# 2. Walk every folder there is and read every notebook and Python file, looking for solutions.
WALK = r"""
import os, json
found, files, dirs = [], 0, 0
for root, ds, fs in os.walk("/"):
    dirs += 1
    if root.startswith("/proc"):
        ds[:] = []
        continue
    for f in fs:
        p = os.path.join(root, f)
        files += 1
        if f.endswith((".ipynb", ".json")):       # where solutions and hidden tests live
            try:
                if os.path.getsize(p) < 2_000_000 and "BEGIN SOLUTION" in open(p, errors="ignore").read():
                    found.append(p)
            except OSError:
                pass
for p in found:
    try:
        for cell in json.load(open(p))["cells"]:
            if cell["cell_type"] == "code":
                try:
                    exec("".join(cell["source"]), globals())
                except Exception:
                    pass
    except Exception:
        pass
raise RuntimeError("WALK " + json.dumps({"files": files, "dirs": dirs, "found": [p for p in found if "course-copy" in p]}))
"""

# 3. A thread that keeps "ending" the current cell while the cell itself runs far past its time-out.
HEARTBEAT = r"""
import os, stat, sys, threading, time, json
i = sys._getframe().f_back.f_locals.get("i", 0)
def pipes():
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and os.get_blocking(fd) is not None and fd > 2:
                yield fd
        except OSError:
            pass
def beat():
    frames = [{"ev": "heartbeat", "phase": "end"} if {plain} else
              {"ev": "cell", "i": i, "phase": "end", "status": "ok", "message": "", "output": "", "t": 0.0}]
    while True:
        for fd in list(pipes()):
            for msg in frames:
                data = json.dumps(msg).encode()
                try:
                    os.write(fd, b"%d\n" % len(data) + data)
                except OSError:
                    pass
        time.sleep(0.3)
threading.Thread(target=beat, daemon=True).start()
time.sleep(20)
"""

# 4. Notes through the kernel keyring, and the calls that would open a way out.
SYSCALLS = r"""
import ctypes, errno, os, json
libc = ctypes.CDLL(None, use_errno=True)
def sc(n, *args):
    r = libc.syscall(n, *args)
    if r == 0 and n == 56:          # clone succeeded: this is the new process
        os._exit(0)
    return "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
USER_KEYRING = ctypes.c_long(-4)
res = {"uid": os.getuid()}
if {write}:
    note = b"answers: 42"
    res["add_key"] = sc(248, b"user", b"redteam-note", note, len(note), USER_KEYRING)
    res["unshare_user_mount"] = sc(272, 0x10000000 | 0x00020000)
    res["clone_newuser"] = sc(56, 0x10000000 | 17, 0, 0, 0, 0)
    res["clone3"] = sc(435, 0, 0)
    try:
        fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    except OSError:
        fd = -1
    res["setns"] = sc(308, fd, 0)
    res["mount"] = sc(165, b"none", b"/tmp", b"tmpfs", 0, 0)
    res["ptrace_traceme"] = sc(101, 0, 0, 0, 0)
    res["bpf"] = sc(321, 0, 0, 0)
    res["perf_event_open"] = sc(298, 0, 0, -1, -1, 0)
    res["userfaultfd"] = sc(323, 0)
    res["pivot_root"] = sc(155, b"/tmp", b"/tmp")
else:
    res["request_key"] = sc(249, b"user", b"redteam-note", 0, 0)
    res["keyctl_get_keyring"] = sc(250, 0, USER_KEYRING, 0)
raise RuntimeError("SYSCALLS " + json.dumps(res))
"""

# 5a. 56 busy processes, each in its own session; they report the CPU time they got.
CPU_HOG = r"""
import os, time, json
r, w = os.pipe()
gate_r, gate_w = os.pipe()          # all 56 start spinning together
kids = []
for _ in range(56):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.close(gate_w)
        os.read(gate_r, 1)
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            pass
        os.write(w, b"%.4f\n" % time.process_time())
        os._exit(0)
    kids.append(pid)
t0 = time.monotonic()
os.close(gate_w)
for pid in kids:
    os.waitpid(pid, 0)
wall = time.monotonic() - t0
os.close(w)
cpu = sum(float(x) for x in os.read(r, 10**6).split())
raise RuntimeError("CPUHOG " + json.dumps({"cpu": cpu, "wall": wall}))
"""

# 5b. Four processes of 300 MB each (the limit is 512 MB for all of them together).
MEM_HOG = r"""
import os, time, json, select
r, w = os.pipe()
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        b = bytearray(300 * 2**20)
        b[::4096] = b"\x01" * len(range(0, len(b), 4096))
        os.write(w, b"x")
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
got, end = 0, time.monotonic() + 4
while time.monotonic() < end and got < 4:
    if select.select([r], [], [], 0.1)[0]:
        got += len(os.read(r, 16))
time.sleep(0.5)
alive = [p for p in kids if os.waitpid(p, os.WNOHANG) == (0, 0)]
held = min(got, len(alive))
raise RuntimeError("MEMHOG " + json.dumps({"reported": got, "alive": len(alive), "held": held}))
"""

# 6. A frame with a NaN in it, on every pipe the child has.
NAN_FRAME = r"""
import os, stat, sys
i = sys._getframe().f_back.f_locals.get("i", 0)
data = ('{"ev":"cell","i":%d,"phase":"end","status":"ok","message":"","output":"","t":NaN}' % i).encode()
for fd in map(int, os.listdir("/proc/self/fd")):
    try:
        if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, b"%d\n" % len(data) + data)
    except OSError:
        pass
"""


@pytest.fixture(scope="module")
def course_copy():
    """A copy of the course's lab sources in a folder the grader knows nothing about."""
    if isolation()["level"] != "full":
        pytest.skip("items 1-6 need the full sandbox (root, namespaces, cgroups, seccomp); "
                    f"this machine gives {isolation()['level']!r}")
    if platform.machine() != "x86_64":
        pytest.skip("the system-call numbers in these attacks are x86_64's")
    base = Path("/var/lib") / f"autograder-redteam-{os.getpid()}" / "course-copy"
    shutil.copytree(ROOT / "labs", base / "labs")
    yield base
    shutil.rmtree(base.parent)


@pytest.fixture(scope="module")
def run(tmp_path_factory, course_copy):
    tmp = tmp_path_factory.mktemp("redteam")
    subs, out = tmp / "subs", tmp / "out"
    s = {}
    for name in HONEST:
        s[name] = add_cell(solved(LAB), HONEST_EXTRA.format(out=private("OUTPUT", name), err=private("ERROR", name)))
    s["a0_cpu_hog"] = add_cell(student(LAB), CPU_HOG, at=3)
    s["z_snoop"] = add_cell(student(LAB), SNOOP)
    s["z_walk_fs"] = add_cell(student(LAB), WALK)
    s["z_heartbeat_plain"] = add_cell(solved(LAB), HEARTBEAT.replace("{plain}", "True"), at=3)
    s["z_heartbeat_valid"] = add_cell(solved(LAB), HEARTBEAT.replace("{plain}", "False"), at=3)
    s["z_keyring_1_write"] = add_cell(student(LAB), SYSCALLS.replace("{write}", "True"))
    s["z_keyring_2_read"] = add_cell(student(LAB), SYSCALLS.replace("{write}", "False"))
    s["z_mem_hog"] = add_cell(student(LAB), MEM_HOG)
    s["z_nan_frame"] = add_cell(solved(LAB), NAN_FRAME, at=3)
    for name in ("zz_honest_after_1", "zz_honest_after_2"):
        s[name] = solved(LAB)
    for name, nb in s.items():
        write(nb, subs / f"{name}.ipynb")
    limits = Limits(timeout=60, cell_timeout=10, probe_timeout=3, memory_mb=512)
    report = grade(LAB, [subs], out, workers=2, limits=limits, progress=False)
    recs = {r.student: r for r in report.records}
    return {"report": report, "recs": recs, "out": out, "copy": course_copy}


def everything(run, name) -> str:
    """All the grader stored or wrote about one submission."""
    r = run["recs"][name]
    parts = [json.dumps(r.logs), r.message, *(t.output for t in r.tests),
             (run["out"] / "feedback" / f"{name}.md").read_text(),
             (run["out"] / "results" / f"{name}.json").read_text()]
    return "\n".join(parts)


def cell_message(run, name, tag: str) -> dict:
    for c in run["recs"][name].logs["cells"]:
        m = re.search(tag + r" (\{.*\})", c["message"])
        if m:
            return json.loads(m.group(1))
    raise AssertionError(f"{name}: no {tag} report in {run['recs'][name].logs['cells']}")


FULL = lab(LAB).max_score
ATTACKS = ["a0_cpu_hog", "z_snoop", "z_walk_fs", "z_heartbeat_plain", "z_heartbeat_valid", "z_keyring_1_write",
           "z_keyring_2_read", "z_mem_hog", "z_nan_frame"]


def test_every_honest_submission_gets_full_marks_beside_the_attacks(run):
    recs = run["recs"]
    assert run["report"].isolation == "full"
    for name in [*HONEST, "zz_honest_after_1", "zz_honest_after_2"]:
        assert recs[name].score == FULL, (name, recs[name].tests, recs[name].logs)
    assert run["report"].exit_code == 0       # no internal_error, even after a NaN frame


@pytest.mark.parametrize("name", ATTACKS)
def test_each_attack_earns_nothing(run, name):
    assert run["recs"][name].score == 0, run["recs"][name].tests


@pytest.mark.parametrize("name", ATTACKS)
def test_no_attack_sees_another_students_output_or_errors(run, name):
    text = everything(run, name)
    assert "PRIVATE-" not in text, text[:2000]
    assert TOKEN not in text


def test_copying_the_previous_student_finds_nothing_in_the_child(run):
    found = cell_message(run, "z_snoop", "SNOOP")
    assert found["texts"] == [] and found["answers"] == 0
    assert found["regions"] > 10             # it did read its whole writable memory


def test_every_submission_has_its_own_input_seed(run):
    seeds = [r.run_seed for r in run["recs"].values()]
    assert len(set(seeds)) == len(seeds)
    assert submission_seed(1, "alice") != submission_seed(1, "bob")
    assert submission_seed(1, "alice") == submission_seed(1, "alice")


def test_a_copy_of_the_course_elsewhere_is_not_there_for_the_child(run):
    copy = run["copy"] / "labs" / "source" / f"{LAB}.ipynb"
    assert "BEGIN SOLUTION" in copy.read_text()            # it is there, outside
    walked = cell_message(run, "z_walk_fs", "WALK")
    assert walked["found"] == []
    assert walked["files"] > 1000                           # the walk did cover the child's whole tree


@pytest.mark.parametrize("name", ["z_heartbeat_plain", "z_heartbeat_valid"])
def test_heartbeat_frames_are_a_protocol_error_not_more_time(run, name):
    r = run["recs"][name]
    assert r.status == "crash"
    assert "broke the grading protocol" in json.dumps(r.logs)
    assert r.logs["wall_s"] < 10                             # far less than the 20 s the cell wanted


def test_keyring_namespaces_and_tracing_are_refused(run):
    w = cell_message(run, "z_keyring_1_write", "SYSCALLS")
    r = cell_message(run, "z_keyring_2_read", "SYSCALLS")
    assert w["uid"] != r["uid"] and min(w["uid"], r["uid"]) >= 2**30
    refused = {k: v for k, v in w.items() if k != "uid"}
    assert refused.pop("clone3") == "ENOSYS"                # so the C library falls back to clone(2)
    assert set(refused.values()) == {"EPERM"}, refused
    assert r["request_key"] == "EPERM" and r["keyctl_get_keyring"] == "EPERM"


def test_many_busy_processes_get_one_cpu_between_them(run):
    hog = cell_message(run, "a0_cpu_hog", "CPUHOG")
    assert hog["cpu"] <= 1.15 * hog["wall"] + 0.2, hog     # cpus=1 for all 56 of them together


def test_memory_across_processes_is_limited_together(run):
    r = run["recs"]["z_mem_hog"]
    try:
        held = cell_message(run, "z_mem_hog", "MEMHOG")["held"]
    except AssertionError:        # the whole child was killed for memory: also contained
        assert any(c["status"] in ("memory_limit", "crash") for c in r.logs["cells"]), r.logs
    else:
        assert held <= 1, held                              # 2 x 300 MB would pass the 512 MB limit


def test_a_nan_in_a_frame_is_that_submissions_protocol_error(run):
    r = run["recs"]["z_nan_frame"]
    assert r.status == "crash" and "broke the grading protocol" in json.dumps(r.logs)
    assert "NaN" in json.dumps(r.logs)


# 7. NaN answers where statistical checks once let NaN through.
NAN_SUBMISSIONS = {
    "05_init_batchnorm": {
        "q1-solution": "def xavier_uniform(fan_in, fan_out, g):\n    return torch.full((fan_in, fan_out), float('nan'))",
        "q2-solution": "def he_normal(fan_in, fan_out, g):\n    return torch.full((fan_in, fan_out), float('nan'))",
        "q3-solution": "def batchnorm_train(x, gamma, beta, rm, rv, momentum=0.1, eps=1e-5):\n"
                       "    n = torch.full_like(x, float('nan'))\n    return n, rm * float('nan'), rv * float('nan')",
        "q4-solution": "def batchnorm_eval(x, gamma, beta, rm, rv, eps=1e-5):\n    return torch.full_like(x, float('nan'))",
    },
    "07_hyperparameter_search": {
        "q1-solution": "def grid_points(low, high, num, log=False):\n    return [float('nan')] * num",
        "q2-solution": "def grid_search(objective, grid, budget):\n"
                       "    return {k: float('nan') for k in grid}, float('nan'), budget",
        "q3-solution": "def log_uniform(low, high, n, g):\n    return torch.full((n,), float('nan'), dtype=torch.float64)",
        "q4-solution": "def random_search(objective, space, budget, g):\n"
                       "    return {'lr': 3e-3, 'weight_decay': 0.01}, float('nan'), budget",
    },
}


@pytest.mark.parametrize("name", sorted(NAN_SUBMISSIONS))
def test_nan_answers_earn_nothing_and_honest_ones_full_marks(name, tmp_path):
    nb = student(name)
    for gid, code in NAN_SUBMISSIONS[name].items():
        replace_solution(nb, gid, code)
    write(nb, tmp_path / "subs" / "nan.ipynb")
    write(solved(name), tmp_path / "subs" / "ref.ipynb")
    report = grade(name, [tmp_path / "subs"], tmp_path / "out", workers=2, progress=False,
                   limits=Limits(timeout=120, cell_timeout=60, probe_timeout=20))
    recs = {r.student: r for r in report.records}
    assert recs["ref"].score == lab(name).max_score
    assert recs["nan"].score == 0, [(t.name, t.status, t.output) for t in recs["nan"].tests]
    assert any("where a finite number is expected" in t.output for t in recs["nan"].tests)
