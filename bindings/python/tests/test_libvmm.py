"""Tests of the Python binding against the Firecracker API emulator.

Environment: LIBVMM_LIBRARY (the library under test) and FC_EMULATOR (the
emulator binary standing in for firecracker); meson sets both. Runs as
root, like the C suites that drive the emulator. Every test works in its
own temporary directory and state directory; whatever it starts is ended
and removed by cleanups that also run when it fails.

SPDX-License-Identifier: MIT
"""

import ctypes
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import weakref

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.dirname(HERE))

import libvmm  # noqa: E402
from libvmm import VM, Context, ErrorCode, State, VMMError  # noqa: E402

EMULATOR = os.environ.get("FC_EMULATOR")


def process_alive(pid):
    """pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_gone(pid, seconds=5.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not process_alive(pid):
            return True
        time.sleep(0.02)
    return False


def pids_mentioning(text):
    """Processes whose command line holds text (our emulators)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry))
    return found


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]


_libc = ctypes.CDLL(None)
# Under AddressSanitizer (preloaded for a sanitized build) malloc is the
# sanitizer's, and it counts its own bytes; glibc's mallinfo2 would not see
# them.
_asan_allocated = getattr(_libc, "__sanitizer_get_current_allocated_bytes",
                          None)
_mallinfo2 = getattr(_libc, "mallinfo2", None)
if _asan_allocated is not None:
    _asan_allocated.restype = ctypes.c_size_t
    _asan_allocated.argtypes = []
elif _mallinfo2 is not None:
    _mallinfo2.restype = _Mallinfo2
    _mallinfo2.argtypes = []
CAN_MEASURE_HEAP = _asan_allocated is not None or _mallinfo2 is not None


def heap_in_use():
    """Bytes malloc has handed out and not had back."""
    gc.collect()
    if _asan_allocated is not None:
        return _asan_allocated()
    info = _mallinfo2()  # glibc >= 2.33
    return info.uordblks + info.hblkhd


def open_fds():
    return len(os.listdir("/proc/self/fd"))


class Records(logging.Handler):
    """Collects the records a logger receives."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


class EmulatorTest(unittest.TestCase):
    """A temporary directory with a kernel, an ext4 rootfs and a state
    directory, and a context whose firecracker is the emulator."""

    @classmethod
    def setUpClass(cls):
        if not EMULATOR or not os.access(EMULATOR, os.X_OK):
            raise RuntimeError("FC_EMULATOR must name the emulator binary "
                               "(meson test sets it)")

    def setUp(self):
        # Short: the API socket path must fit in 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="vmpy.", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.addCleanup(self.kill_leftovers)
        self.state_dir = os.path.join(self.dir, "s")
        self.kernel = os.path.join(self.dir, "vmlinux")
        self.rootfs = os.path.join(self.dir, "rootfs.ext4")
        tree = os.path.join(self.dir, "tree")
        for d in ("etc/network", "etc/ssh", "root"):
            os.makedirs(os.path.join(tree, d))
        with open(os.path.join(tree, "etc/network/interfaces"), "w") as f:
            f.write("auto lo\niface lo inet loopback\n")
        with open(os.path.join(tree, "etc/hostname"), "w") as f:
            f.write("base\n")
        with open(self.kernel, "wb") as f:
            f.write(os.urandom(4096))
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", tree, self.rootfs,
                        "32M"], check=True, stdout=subprocess.DEVNULL)
        self.ctx = self.context()

    def context(self, **kwargs):
        ctx = Context(state_dir=self.state_dir, firecracker=EMULATOR,
                      **kwargs)
        self.addCleanup(ctx.close)
        return ctx

    def create(self, name, ctx=None, **kwargs):
        spec = dict(kernel=self.kernel, base_image=self.rootfs, no_net=True,
                    overlay="copy")
        spec.update(kwargs)
        vm = VM.create(ctx or self.ctx, name, **spec)
        self.addCleanup(self.remove, name)
        return vm

    def remove(self, name):
        """Delete a VM a test made, whatever state the test left it in."""
        try:
            with Context(state_dir=self.state_dir, firecracker=EMULATOR,
                         logger=None) as ctx:
                VM.open(ctx, name).delete(force=True)
        except VMMError as e:
            # A record a test corrupted goes with the directory.
            if e.code not in (ErrorCode.ENOTFOUND, ErrorCode.ECORRUPT):
                raise

    def kill_leftovers(self):
        for pid in pids_mentioning(self.dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_gone(pid)

    def vm_dirs(self):
        try:
            return sorted(os.listdir(os.path.join(self.state_dir, "vms")))
        except FileNotFoundError:
            return []

    def assertVMMError(self, code, fn, *args, **kwargs):
        with self.assertRaises(VMMError) as cm:
            fn(*args, **kwargs)
        e = cm.exception
        self.assertEqual(e.code, code, str(e))
        self.assertEqual(e.name, "VMM_" + ErrorCode(code).name)
        self.assertTrue(e.message, "the error has no message")
        return e


class TestLoading(unittest.TestCase):
    def test_version(self):
        text, number = libvmm.library_version()
        parts = [int(p) for p in text.split(".")]
        self.assertEqual(number, parts[0] << 16 | parts[1] << 8 | parts[2])

    def test_loaded_the_library_under_test(self):
        want = os.environ.get("LIBVMM_LIBRARY")
        if not want:
            self.skipTest("LIBVMM_LIBRARY is not set")
        with open("/proc/self/maps") as f:
            maps = f.read()
        self.assertIn(os.path.realpath(want), maps)

    def test_struct_layouts_match_the_headers(self):
        """The ctypes structures have the C compiler's sizes and offsets."""
        from libvmm import _native
        cc = shutil.which("cc")
        if cc is None:
            self.skipTest("no C compiler")
        checks = {
            "vmm_context_options": _native.ContextOptions,
            "vmm_error": _native.Error,
            "vmm_guest_file": _native.GuestFile,
            "vmm_vm_spec": _native.VMSpec,
            "vmm_start_options": _native.StartOptions,
        }
        lines = []
        for cname, cls in checks.items():
            lines.append('printf("%s sizeof %%zu\\n", sizeof(%s));'
                         % (cname, cname))
            for field, _ in cls._fields_:
                lines.append('printf("%s %s %%zu\\n", offsetof(%s, %s));'
                             % (cname, field, cname, field))
        src = ("#include <stddef.h>\n#include <stdio.h>\n"
               "#include <libvmm/context.h>\n#include <libvmm/error.h>\n"
               "#include <libvmm/vm.h>\nint main(void) {\n%s\nreturn 0;\n}\n"
               % "\n".join(lines))
        with tempfile.TemporaryDirectory(prefix="vmpy.") as d:
            with open(os.path.join(d, "layout.c"), "w") as f:
                f.write(src)
            exe = os.path.join(d, "layout")
            subprocess.run([cc, "-std=c99", "-I",
                            os.path.join(SOURCE_ROOT, "include"), "-o", exe,
                            os.path.join(d, "layout.c")], check=True)
            out = subprocess.run([exe], check=True, capture_output=True,
                                 text=True).stdout
        c = {}
        for line in out.splitlines():
            cname, field, value = line.split()
            c[cname, field] = int(value)
        for cname, cls in checks.items():
            self.assertEqual(ctypes.sizeof(cls), c[cname, "sizeof"], cname)
            for field, _ in cls._fields_:
                self.assertEqual(getattr(cls, field).offset,
                                 c[cname, field], "%s.%s" % (cname, field))


class TestLifecycle(EmulatorTest):
    def test_create_start_stop_kill_delete(self):
        vm = self.create("life", vcpus=2, memory_mib=256)
        self.assertEqual(vm.name, "life")
        self.assertIs(vm.state, State.STOPPED)
        self.assertEqual(vm.pid, 0)
        self.assertEqual(vm.vcpus, 2)
        self.assertEqual(vm.memory_mib, 256)
        self.assertEqual(vm.kernel, self.kernel)
        self.assertEqual(vm.base_image, self.rootfs)
        self.assertIsNone(vm.initrd)
        self.assertIsNone(vm.guest_ip)
        self.assertIsNone(vm.tap)
        self.assertEqual(vm.overlay_driver, "copy")
        self.assertTrue(os.path.isfile(vm.disk))
        self.assertGreaterEqual(vm.disk_size, 32 << 20)
        self.assertTrue(os.path.isfile(vm.known_hosts))
        self.assertTrue(vm.api_socket.startswith(self.state_dir))
        self.assertIs(vm.context, self.ctx)

        vm.start()
        self.assertIs(vm.state, State.RUNNING)
        pid = vm.pid
        self.assertGreater(pid, 0)
        self.assertTrue(process_alive(pid))
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            self.assertIn(b"fc-emulator", f.read())

        with VM.open(self.ctx, "life") as again:
            self.assertIs(again.state, State.RUNNING)
            self.assertEqual(again.pid, pid)
            e = self.assertVMMError(ErrorCode.ESTATE, again.start)
            self.assertIn("life", e.message)

        vm.pause()
        self.assertIs(vm.state, State.PAUSED)
        vm.resume()
        self.assertIs(vm.state, State.RUNNING)

        vm.stop(timeout=5)
        self.assertIs(vm.state, State.STOPPED)
        self.assertEqual(vm.pid, 0)
        self.assertTrue(wait_gone(pid), "VMM %d outlived stop" % pid)

        vm.set_vcpus(4)
        vm.set_memory(512)
        self.assertEqual((vm.vcpus, vm.memory_mib), (4, 512))

        vm.start()
        self.assertIs(vm.state, State.RUNNING)
        pid = vm.pid
        self.assertTrue(process_alive(pid))
        self.assertVMMError(ErrorCode.ESTATE, vm.set_vcpus, 2)
        vm.kill()
        self.assertIs(vm.state, State.STOPPED)
        self.assertFalse(process_alive(pid))
        self.assertIn("SIGKILL", vm.last_exit or "")

        vm.start()
        pid = vm.pid
        self.assertVMMError(ErrorCode.ESTATE, vm.delete)
        vm.delete(force=True)
        self.assertTrue(wait_gone(pid))
        self.assertTrue(vm.closed)
        self.assertVMMError(ErrorCode.ENOTFOUND, vm.start)
        self.assertVMMError(ErrorCode.ENOTFOUND, VM.open, self.ctx, "life")
        self.assertEqual(self.vm_dirs(), [])
        vm.close()  # harmless after delete

    def test_refresh_sees_another_handles_change(self):
        vm = self.create("fresh")
        with VM.open(self.ctx, "fresh") as other:
            other.set_vcpus(2)
        self.assertEqual(vm.vcpus, 1)
        vm.refresh()
        self.assertEqual(vm.vcpus, 2)

    def test_list(self):
        self.create("b-one").close()
        self.create("a-two").close()
        self.create("c-bad").close()
        record = os.path.join(self.state_dir, "vms", "c-bad", "vm.json")
        with open(record, "w") as f:
            f.write("{ not json")

        entries = VM.list(self.ctx)
        self.assertEqual([e.name for e in entries],
                         ["a-two", "b-one", "c-bad"])
        for e in entries[:2]:
            self.assertIsNone(e.error)
            self.assertEqual(e.vm.name, e.name)
            self.assertIs(e.vm.state, State.STOPPED)
        self.assertIsNone(entries[2].vm)
        self.assertIn(record, entries[2].error)

        # The list stays allocated while one of its VMs is open.
        keep = entries[0].vm
        del entries
        gc.collect()
        keep.start()
        self.assertIs(keep.state, State.RUNNING)
        keep.kill()
        keep.close()
        keep.close()

        # The corrupt record cannot be deleted through the API; the test
        # removes it, then the others are deleted through the binding.
        shutil.rmtree(os.path.dirname(record))
        for e in VM.list(self.ctx):
            e.vm.delete()
        self.assertEqual(self.vm_dirs(), [])

    def test_guest_files_and_progress(self):
        seen = []
        ctx = self.context(progress=lambda *a: seen.append(a))
        vm = self.create("files", ctx=ctx, files={"/etc/motd": b"hello\n"},
                         ssh_authorized_keys="ssh-ed25519 AAAA test")
        self.assertTrue(seen, "no progress reported while copying the disk")
        name, stage, done, total = seen[-1]
        self.assertEqual((name, stage), ("files", "copy"))
        self.assertEqual(done, total)
        vm.start()
        vm.kill()
        out = subprocess.run(["debugfs", "-R", "cat /etc/motd", vm.disk],
                             capture_output=True, text=True)
        self.assertEqual(out.stdout, "hello\n", out.stderr)


class TestErrors(EmulatorTest):
    def test_bad_name(self):
        for name in ("-dash", "has space", "x" * 64, ""):
            e = self.assertVMMError(ErrorCode.EINVAL, self.create, name)
            self.assertIn("name", e.message)
            self.assertEqual(e.os_error, 0)
            self.assertIsNone(e.fault_message)
        self.assertVMMError(ErrorCode.EINVAL, self.create, "nul\0byte")
        self.assertVMMError(ErrorCode.EINVAL, self.create, 42)
        self.assertEqual(self.vm_dirs(), [])

    def test_unknown_vm(self):
        e = self.assertVMMError(ErrorCode.ENOTFOUND, VM.open, self.ctx,
                                "ghost")
        self.assertIn("ghost", e.message)
        self.assertEqual(str(e), "VMM_ENOTFOUND: " + e.message)

    def test_bad_spec_leaves_nothing(self):
        e = self.assertVMMError(ErrorCode.EINVAL, self.create, "odd",
                                vcpus=3)
        self.assertIn("vcpu", e.message.lower())
        self.assertVMMError(ErrorCode.EINVAL, self.create, "small",
                            memory_mib=64)
        self.assertVMMError(ErrorCode.ENOTFOUND, self.create, "nokernel",
                            kernel=os.path.join(self.dir, "absent"))
        self.assertVMMError(ErrorCode.EINVAL, self.create, "str",
                            vcpus="2")
        self.assertVMMError(ErrorCode.EINVAL, self.create, "neg",
                            vcpus=-2)
        self.assertVMMError(ErrorCode.EINVAL, self.create, "ov",
                            overlay="zfs")
        self.assertEqual(self.vm_dirs(), [])

        vm = self.create("ok")
        self.assertVMMError(ErrorCode.EINVAL, vm.set_vcpus, 3)
        self.assertVMMError(ErrorCode.EINVAL, vm.set_memory, 1)
        self.assertEqual(vm.vcpus, 1)

    def test_bad_context_options(self):
        self.assertVMMError(ErrorCode.EINVAL, Context, state_dir="relative")
        self.assertVMMError(ErrorCode.EINVAL, Context, net_pool="10.0.0.0/29")
        self.assertVMMError(ErrorCode.EINVAL, Context, log_level="loud")

    def test_injected_firecracker_fault(self):
        fault = "Injected: the kernel \"vmlinux\" cannot boot (50% sure)"
        vm = self.create("faulty")
        os.environ["FCEMU_START_FAULT"] = fault
        try:
            e = self.assertVMMError(ErrorCode.EAPI, vm.start)
        finally:
            del os.environ["FCEMU_START_FAULT"]
        self.assertEqual(e.fault_message, fault)
        self.assertEqual(e.http_status, 400)
        self.assertIn(fault, e.message)
        self.assertIs(vm.state, State.STOPPED)
        self.assertEqual(pids_mentioning(self.dir), [])
        vm.start()
        self.assertIs(vm.state, State.RUNNING)
        vm.kill()

    def test_closed_handles(self):
        vm = self.create("shut")
        vm.close()
        vm.close()
        self.assertTrue(vm.closed)
        self.assertVMMError(ErrorCode.EINVAL, vm.start)
        self.assertVMMError(ErrorCode.EINVAL, getattr, vm, "state")
        ctx = self.context()
        ctx.close()
        ctx.close()
        self.assertVMMError(ErrorCode.EINVAL, VM.open, ctx, "shut")


class TestLogging(EmulatorTest):
    def setUp(self):
        super().setUp()
        self.handler = Records()
        logger = logging.getLogger(libvmm.LOGGER_NAME)
        self.old_level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self.handler)
        self.addCleanup(logger.removeHandler, self.handler)
        self.addCleanup(logger.setLevel, self.old_level)

    def test_create_and_start_are_logged(self):
        vm = self.create("talk")
        vm.start()
        pid = vm.pid
        vm.kill()
        records = [r for r in self.handler.records
                   if getattr(r, "vm_name", None) == "talk"]
        messages = [r.getMessage() for r in records]
        created = [r for r in records
                   if r.getMessage().startswith("created VM talk")]
        started = [r for r in records
                   if r.getMessage().startswith("started VM talk")]
        self.assertEqual(len(created), 1, messages)
        self.assertEqual(len(started), 1, messages)
        for r in created + started:
            self.assertEqual(r.name, "libvmm")
            self.assertEqual(r.levelno, logging.INFO)
            self.assertEqual(r.component, "vm")
        self.assertIn("pid %d" % pid, started[0].getMessage())

    def test_silent_without_logger_or_below_level(self):
        quiet = self.context(logger=None)
        self.create("quiet", ctx=quiet)
        errors_only = self.context(log_level=libvmm.LogLevel.ERROR)
        self.create("terse", ctx=errors_only)
        self.assertEqual(self.handler.records, [])

    def test_own_logger(self):
        mine = logging.getLogger("libvmm-test-own")
        mine.setLevel(logging.DEBUG)
        records = Records()
        mine.addHandler(records)
        self.addCleanup(mine.removeHandler, records)
        self.create("mine", ctx=self.context(logger=mine))
        self.assertTrue(any(r.vm_name == "mine" for r in records.records))
        self.assertEqual(self.handler.records, [])


    def test_release_inside_a_callback_is_deferred(self):
        """A handle closed from a log handler (or by a collection running
        there) is freed only after the library call returns."""
        victim = self.create("victim")
        owner = victim._owner
        seen = []

        class Closer(logging.Handler):
            def emit(self, record):
                if victim is not None and not victim.closed:
                    victim.close()
                    seen.append(owner.ptr)

        closer = Closer(logging.DEBUG)
        logger = logging.getLogger(libvmm.LOGGER_NAME)
        logger.addHandler(closer)
        self.addCleanup(logger.removeHandler, closer)
        vm = self.create("caller")
        self.assertEqual(len(seen), 1)
        self.assertIsNotNone(seen[0], "freed inside the callback")
        self.assertIsNone(owner.ptr, "not freed after the call")
        vm.close()

    def test_threads(self):
        """Calls and their log callbacks from several threads at once."""
        import threading
        errors = []

        def life(name):
            try:
                vm = self.create(name)
                vm.start()
                vm.stop(timeout=5)
                vm.delete()
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=life, args=("th%d" % i,))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        for i in range(4):
            started = [r for r in self.handler.records
                       if r.vm_name == "th%d" % i and
                       r.getMessage().startswith("started VM")]
            self.assertEqual(len(started), 1)
        self.assertEqual(self.vm_dirs(), [])


class TestHandles(EmulatorTest):
    def test_release_never_stops_the_vm(self):
        vm = self.create("keep")
        vm.start()
        pid = vm.pid
        gone = weakref.ref(vm)
        del vm
        gc.collect()
        self.assertIsNone(gone(), "the VM object was not collected")
        time.sleep(0.2)
        self.assertTrue(process_alive(pid), "releasing the handle ended "
                        "VMM %d" % pid)

        # The context too: closing it leaves running VMs alone.
        self.ctx.close()
        ctx = self.context()
        with VM.open(ctx, "keep") as vm:
            self.assertIs(vm.state, State.RUNNING)
            self.assertEqual(vm.pid, pid)
        self.assertTrue(process_alive(pid))
        VM.open(ctx, "keep").kill()
        self.assertFalse(process_alive(pid))

    def test_close_while_another_thread_uses_the_handle(self):
        """The handle is freed when the call in progress returns."""
        import threading
        vm = self.create("busy")
        owner = vm._owner
        inside, closed = threading.Event(), threading.Event()

        class Pause(logging.Handler):
            def emit(self, record):
                if record.getMessage().startswith("started VM busy"):
                    inside.set()
                    closed.wait(10)

        pause = Pause(logging.DEBUG)
        logger = logging.getLogger(libvmm.LOGGER_NAME)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(pause)
        self.addCleanup(logger.removeHandler, pause)
        starter = threading.Thread(target=vm.start)
        starter.start()
        self.assertTrue(inside.wait(10), "start did not log")
        vm.close()
        self.assertTrue(vm.closed)
        self.assertIsNotNone(owner.ptr, "freed during vmm_start()")
        closed.set()
        starter.join(10)
        self.assertIsNone(owner.ptr, "not freed after vmm_start()")
        with VM.open(self.ctx, "busy") as again:
            self.assertIs(again.state, State.RUNNING)
            again.kill()

    def test_vm_keeps_its_context_alive(self):
        ctx = self.context()
        vm = self.create("held", ctx=ctx)
        owner = ctx._owner
        ctx.close()
        self.assertTrue(ctx.closed)
        self.assertIsNotNone(owner.ptr, "context freed under an open VM")
        vm.start()  # works on the context it holds
        vm.kill()
        vm.close()
        self.assertIsNone(owner.ptr, "context not freed after its last VM")

        # Without explicit close: the VM's reference is enough.
        vm = self.create("held2", ctx=Context(state_dir=self.state_dir,
                                              firecracker=EMULATOR))
        gc.collect()
        self.assertFalse(vm.context.closed)
        self.assertEqual(vm.context.state_dir, self.state_dir)
        vm.close()

    @unittest.skipUnless(CAN_MEASURE_HEAP, "no mallinfo2 in this libc")
    def test_no_leak_over_1000_open_close_cycles(self):
        vm = self.create("cycle")
        vm.start()
        self.addCleanup(vm.close)
        for _ in range(50):  # warm up caches and the allocator
            VM.open(self.ctx, "cycle").close()
            VM.list(self.ctx)

        # What a leaked handle costs, to state the bound in handles: 20
        # handles opened through the C API and then freed again.
        from libvmm import _lib
        before = heap_in_use()
        raw = []
        for _ in range(20):
            out = ctypes.c_void_p()
            self.assertEqual(_lib.vmm_open(ctypes.byref(out),
                                           self.ctx._owner.ptr, b"cycle"), 0)
            raw.append(out.value)
        per_handle = (heap_in_use() - before) / 20
        for p in raw:
            _lib.vmm_vm_free(p)
        self.assertGreater(per_handle, 100, "cannot measure a handle")

        heap, fds = heap_in_use(), open_fds()
        for i in range(1000):
            if i % 3 == 0:
                with VM.open(self.ctx, "cycle") as h:
                    self.assertEqual(h.pid, vm.pid)
            elif i % 3 == 1:
                VM.open(self.ctx, "cycle").close()
            else:
                VM.open(self.ctx, "cycle")  # released by the collector
        for _ in range(10):
            [e.vm.state for e in VM.list(self.ctx)]
        grown = heap_in_use() - heap
        sys.stderr.write("heap %+d bytes over 1000 cycles; a handle is %d "
                         "bytes ... " % (grown, per_handle))

        # 1,000 cycles may grow the heap by less than 10 handles' worth.
        bound = 10 * per_handle
        self.assertLess(grown, bound, "heap grew %d bytes over 1000 cycles "
                        "(a handle is %d)" % (grown, per_handle))
        self.assertEqual(open_fds(), fds, "file descriptors leaked")
        self.assertTrue(process_alive(vm.pid))
        vm.kill()


if __name__ == "__main__":
    unittest.main(verbosity=2)
