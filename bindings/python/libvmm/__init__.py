"""Python binding of libvmm: create, start, stop and delete Firecracker
microVMs.

    import libvmm

    with libvmm.Context(state_dir="/var/lib/libvmm") as ctx:
        vm = libvmm.VM.create(ctx, "web1", kernel="/img/vmlinux",
                              base_image="/img/rootfs.ext4", vcpus=2)
        vm.start()
        print(vm.state, vm.pid, vm.guest_ip)

Only the standard library is used: ctypes loads libvmm.so.0, or the file
named by the environment variable LIBVMM_LIBRARY.

Lifetimes follow the C library's: a Context or VM object owns one C handle,
released once, by close(), by leaving a `with` block, or when the object is
garbage-collected. Releasing a VM handle never touches the microVM; only
stop(), kill() and delete() end a VMM. A VM keeps its Context's C handle
alive, so the context is freed only after the last VM obtained through it.

Every failure raises VMMError.

SPDX-License-Identifier: MIT
"""

import atexit
import contextlib
import ctypes
import enum
import logging
import os
import threading
import weakref
from typing import Callable, Mapping, NamedTuple, Optional, Union

from . import _native

__all__ = [
    "Context", "VM", "ListEntry", "GuestFile", "VMMError", "ErrorCode",
    "State", "Overlay", "LogLevel", "library_version", "LOGGER_NAME",
]

_lib, _LIB_VERSION, _LIB_VERSION_NUMBER = _native.load()

#: The logger that receives the library's messages by default.
LOGGER_NAME = "libvmm"


def library_version():
    """The loaded library's version: ("0.1.0", 0x000100)."""
    return _LIB_VERSION, _LIB_VERSION_NUMBER


class _Enum(enum.IntEnum):
    """An int that prints as its name."""

    def __str__(self):
        return self.name


class ErrorCode(_Enum):
    """vmm_error_code. A code the binding does not know stays a plain int."""
    OK = 0
    EINVAL = -1
    ENOMEM = -2
    ENOTFOUND = -3
    EEXIST = -4
    EBUSY = -5
    ESTATE = -6
    EIO = -7
    EAPI = -8
    ETIMEDOUT = -9
    EPROCESS = -10
    EDISK = -11
    ENET = -12
    EUNSUPPORTED = -13
    ECORRUPT = -14


class State(_Enum):
    """vmm_state: what a VM is doing, as far as the host can tell."""
    STOPPED = 0
    RUNNING = 1
    PAUSED = 2


class Overlay(_Enum):
    """vmm_overlay_driver: how a VM's root disk is made."""
    AUTO = 0
    DM_SNAPSHOT = 1
    COPY = 2


class LogLevel(_Enum):
    """vmm_log_level; lower is more severe."""
    ERROR = 1
    WARNING = 2
    INFO = 3
    DEBUG = 4


_TO_PYTHON_LEVEL = {
    LogLevel.ERROR: logging.ERROR,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.INFO: logging.INFO,
    LogLevel.DEBUG: logging.DEBUG,
}

# vmm_vm_spec flags and vmm_delete() flags, as in vm.h.
_VM_NO_NET = 0x1
_VM_OWN_NETNS = 0x2
_DELETE_FORCE = 0x1


def _text(ptr):
    """Copy a borrowed C string (a c_void_p value) into a str, or None."""
    if not ptr:
        return None
    return ctypes.string_at(ptr).decode("utf-8", "surrogateescape")


class VMMError(Exception):
    """A libvmm call failed.

    code          an ErrorCode (a plain negative int if this binding does
                  not know it)
    name          the code's symbolic name, e.g. "VMM_ENOTFOUND"
    message       the library's message, naming the VM, file or fault
    os_error      errno of the failed system call, or 0
    http_status   HTTP status of a refused Firecracker request, or 0
    fault_message Firecracker's fault_message verbatim, or None
    """

    def __init__(self, code, message, os_error=0, http_status=0,
                 fault_message=None):
        try:
            code = ErrorCode(code)
            name = "VMM_" + code.name
        except ValueError:
            name = "VMM_E%d" % -code if code < 0 else "VMM_%d" % code
        super().__init__(code, message)
        self.code = code
        self.name = name
        self.message = message
        self.os_error = os_error
        self.http_status = http_status
        self.fault_message = fault_message

    def __str__(self):
        return "%s: %s" % (self.name, self.message)

    def __repr__(self):
        return "VMMError(%s, %r)" % (self.name, self.message)


def _invalid(message):
    return VMMError(ErrorCode.EINVAL, message)


def _last_error(code):
    """The calling thread's last-error record as a VMMError.

    Read right after the failed call, before any other libvmm call can
    reset it (see _Calls)."""
    rec = _lib.vmm_error_last().contents
    message = _text(rec.message) or _text(_lib.vmm_strerror(code))
    return VMMError(code, message, rec.os_error, rec.http_status,
                    _text(rec.fault_message))


class _Calls(threading.local):
    """Per-thread depth of calls into the library and of callbacks from it.

    While a thread is inside a libvmm call or a callback, releasing a handle
    is deferred: a garbage collection can run finalizers at any allocation,
    also in a log handler the library is calling (which must not call back
    into libvmm), or between a failed call and the vmm_error_last() that
    reads its record. Deferred releases run when a thread next leaves its
    outermost call. A callback may also arrive on a helper thread the
    library made, whose depth says nothing about the call that waits for
    it, so the queue is shared by all threads.
    """

    def __init__(self):
        self.depth = 0


_calls = _Calls()
_pending = []
_pending_lock = threading.Lock()


def _defer(release):
    with _pending_lock:
        _pending.append(release)


def _flush():
    while True:
        with _pending_lock:
            if not _pending:
                return
            release = _pending.pop()
        release()


atexit.register(_flush)


def _enter():
    _calls.depth += 1


def _leave(callback=False):
    _calls.depth -= 1
    if _calls.depth == 0 and not callback:
        _flush()


def _call(fn, *args):
    """Call fn (a libvmm function returning 0 or a negative code); raise
    VMMError on failure."""
    _enter()
    try:
        r = fn(*args)
        err = _last_error(r) if r < 0 else None
    finally:
        _leave()
    if err is not None:
        raise err


class _Owner:
    """One C object and the references to it.

    The object is freed when the count drops to 0, and then its parent
    loses one reference: a VM's owner holds the context's, a list's owner
    holds the context's, and each VM taken from a list holds the list's.
    """

    __slots__ = ("ptr", "_free", "_parent", "_refs", "_lock", "keep",
                 "__weakref__")

    def __init__(self, ptr, free, parent=None):
        self.ptr = ptr
        self._free = free
        self._parent = parent
        self._refs = 1
        self._lock = threading.Lock()
        self.keep = None  # Python objects the C object points to
        if parent is not None:
            parent.acquire()

    def acquire(self):
        with self._lock:
            if self._refs <= 0:
                raise _invalid("libvmm: the handle is closed")
            self._refs += 1

    def release(self):
        if _calls.depth > 0:
            _defer(self.release)
            return
        with self._lock:
            self._refs -= 1
            if self._refs > 0:
                return
            ptr, self.ptr = self.ptr, None
        self._free(ptr)
        self.keep = None
        if self._parent is not None:
            self._parent.release()


@contextlib.contextmanager
def _hold(owner, finalizer, closed_message):
    """The owner's pointer, kept allocated for the block even if another
    thread closes the object meanwhile."""
    if not finalizer.alive:
        raise _invalid(closed_message)
    owner.acquire()
    try:
        yield owner.ptr
    finally:
        owner.release()


def _fspath(value, what):
    if value is None:
        return None
    try:
        b = os.fsencode(value)
    except TypeError:
        raise _invalid("%s must be a path, not %s" %
                       (what, type(value).__name__)) from None
    if b"\0" in b:
        raise _invalid("%s holds a NUL byte" % what)
    return b


def _cstr(value, what):
    if value is None:
        return None
    if isinstance(value, str):
        b = value.encode("utf-8", "surrogateescape")
    elif isinstance(value, bytes):
        b = value
    else:
        raise _invalid("%s must be a str, not %s" %
                       (what, type(value).__name__))
    if b"\0" in b:
        raise _invalid("%s holds a NUL byte" % what)
    return b


def _u32(value, what, default=0):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid("%s must be an int, not %s" %
                       (what, type(value).__name__))
    if not 0 <= value <= 0xffffffff:
        raise _invalid("%s %d is out of range" % (what, value))
    return value


def _millis(seconds, what):
    """A timeout in seconds as the library's milliseconds (0: default)."""
    if seconds is None:
        return 0
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise _invalid("%s must be a number of seconds" % what)
    if seconds <= 0:
        raise _invalid("%s must be positive" % what)
    return _u32(max(1, int(round(seconds * 1000))), what)


class Context:
    """A libvmm context: state directory, firecracker binary, logging.

    Keyword arguments (all optional; None means the library's default):

    state_dir    where VM records live (default /var/lib/libvmm)
    firecracker  the firecracker binary, a path or a name in PATH
    log_level    most verbose level the library reports: a LogLevel or a
                 `logging` level (default: everything; the logger filters)
    logger       a logging.Logger, or None for silence (default: the
                 "libvmm" logger); each record carries `component` and
                 `vm_name` attributes
    api_timeout  bound on each Firecracker API request, in seconds
    net_pool     IPv4 pool for guest addresses, "A.B.C.D/N"
    progress     callable(vm_name, stage, done, total) for long operations

    The callbacks run on the thread of the call that reports, inside it; an
    exception they raise cannot unwind through C and goes to
    sys.unraisablehook, as ctypes does for every callback.
    """

    def __init__(self, *, state_dir=None, firecracker=None,
                 log_level=None, logger=logging.getLogger(LOGGER_NAME),
                 api_timeout=None, net_pool=None,
                 progress: Optional[Callable[[str, str, int, int],
                                             None]] = None):
        opts = _native.ContextOptions()
        opts.size = ctypes.sizeof(opts)
        opts.state_dir = _fspath(state_dir, "state_dir")
        opts.firecracker = _fspath(firecracker, "firecracker")
        opts.net_pool = _cstr(net_pool, "net_pool")
        opts.api_timeout_ms = _millis(api_timeout, "api_timeout")
        keep = []

        if logger is not None:
            opts.log_level = _c_log_level(log_level)
            log_fn = _native.LOG_FN(_log_trampoline(logger))
            opts.log_fn = log_fn
            keep.append(log_fn)
        if progress is not None:
            if not callable(progress):
                raise _invalid("progress must be callable")
            progress_fn = _native.PROGRESS_FN(_progress_trampoline(progress))
            opts.progress_fn = progress_fn
            keep.append(progress_fn)

        out = ctypes.c_void_p()
        _call(_lib.vmm_context_new, ctypes.byref(out), ctypes.byref(opts))
        self._owner = _Owner(out.value, _lib.vmm_context_free)
        # The C context calls these until vmm_context_free(), which runs
        # when the owner's last reference goes, not when self does.
        self._owner.keep = keep
        self._finalizer = weakref.finalize(self, self._owner.release)

    def _use(self):
        return _hold(self._owner, self._finalizer,
                     "libvmm: the context is closed")

    def close(self):
        """Release this object's hold on the C context. It is freed once
        every VM obtained through it is released too. Closing twice is
        harmless; running VMs are never touched."""
        self._finalizer()

    @property
    def closed(self):
        return not self._finalizer.alive

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def state_dir(self) -> str:
        with self._use() as ptr:
            return _text(_lib.vmm_context_state_dir(ptr))

    @property
    def firecracker(self) -> str:
        with self._use() as ptr:
            return _text(_lib.vmm_context_firecracker(ptr))

    def __repr__(self):
        if self.closed:
            return "<libvmm.Context (closed)>"
        return "<libvmm.Context state_dir=%r>" % self.state_dir


def _c_log_level(level):
    if level is None:
        return LogLevel.DEBUG
    if isinstance(level, LogLevel):
        return level
    if isinstance(level, int) and not isinstance(level, bool):
        # A `logging` level: the most verbose libvmm level it lets through.
        if level <= logging.DEBUG:
            return LogLevel.DEBUG
        if level <= logging.INFO:
            return LogLevel.INFO
        if level <= logging.WARNING:
            return LogLevel.WARNING
        return LogLevel.ERROR
    raise _invalid("log_level must be a LogLevel or a logging level")


def _log_trampoline(logger):
    def log(level, component, vm_name, message, user):
        _enter()
        try:
            pylevel = _TO_PYTHON_LEVEL.get(level, logging.ERROR)
            if logger.isEnabledFor(pylevel):
                # No args, so a '%' in the message is kept as it is.
                logger.log(pylevel, _text(message) or "",
                           extra={"component": _text(component),
                                  "vm_name": _text(vm_name)})
        finally:
            _leave(callback=True)
    return log


def _progress_trampoline(progress):
    def report(vm_name, stage, done, total, user):
        _enter()
        try:
            progress(_text(vm_name), _text(stage), done, total)
        finally:
            _leave(callback=True)
    return report


class GuestFile(NamedTuple):
    """A file libvmm writes into the guest's disk at every start."""
    path: str
    data: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


class ListEntry(NamedTuple):
    """One entry of VM.list(): a VM, or the error that hides its record."""
    name: str
    vm: Optional["VM"]
    error: Optional[str]


def _string_getter(cfn, doc):
    def get(self):
        with self._serial, self._use() as ptr:
            return _text(cfn(ptr))
    return property(get, doc=doc)


def _int_getter(cfn, doc):
    def get(self):
        with self._serial, self._use() as ptr:
            return cfn(ptr)
    return property(get, doc=doc)


def _files_array(files, keep):
    """vmm_guest_file[] from GuestFile tuples or a {path: bytes} mapping."""
    if isinstance(files, Mapping):
        files = [GuestFile(p, d) for p, d in files.items()]
    files = list(files)
    arr = (_native.GuestFile * max(1, len(files)))()
    for i, f in enumerate(files):
        if not isinstance(f, GuestFile):
            f = GuestFile(*f)
        data = f.data.encode() if isinstance(f.data, str) else bytes(f.data)
        buf = ctypes.create_string_buffer(data, len(data))
        keep.append(buf)
        arr[i].path = _fspath(f.path, "files[%d].path" % i)
        arr[i].data = ctypes.cast(buf, ctypes.c_void_p)
        arr[i].size = len(data)
        arr[i].mode = _u32(f.mode, "files[%d].mode" % i)
        arr[i].uid = _u32(f.uid, "files[%d].uid" % i)
        arr[i].gid = _u32(f.gid, "files[%d].gid" % i)
    return arr, len(files)


class VM:
    """A handle to one VM record.

    Get one with VM.create(), VM.open() or VM.list(). Properties report
    what the last open, refresh or operation saw; refresh() re-reads.
    close() (or the end of a `with` block, or garbage collection) releases
    the handle and never stops the VM.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("use VM.create(), VM.open() or VM.list()")

    @classmethod
    def _wrap(cls, ctx, owner):
        self = object.__new__(cls)
        self._context = ctx
        self._owner = owner
        self._deleted = False
        # The C library allows one thread at a time per handle.
        self._serial = threading.RLock()
        self._finalizer = weakref.finalize(self, owner.release)
        self._name = _text(_lib.vmm_vm_name(owner.ptr))
        return self

    @classmethod
    def _own(cls, ctx, ptr):
        return cls._wrap(ctx, _Owner(ptr, _lib.vmm_vm_free, ctx._owner))

    @classmethod
    def create(cls, ctx: Context, name: str, *, kernel, base_image,
               initrd=None, boot_args=None, vcpus=None, memory_mib=None,
               disk_size=None, overlay: Union[Overlay, str] = Overlay.AUTO,
               ssh_authorized_keys=None, netns=None, no_net=False,
               own_netns=False, files=()) -> "VM":
        """Create a VM (left stopped) and return a handle to it.

        kernel, base_image, initrd are paths; boot_args, vcpus (1 or even
        up to 32), memory_mib (>= 128) and disk_size (bytes) default to the
        library's choice when None. overlay is an Overlay or "auto",
        "dm-snapshot", "copy". no_net: no tap or network config; own_netns:
        a network namespace of its own; netns: an existing one by name.
        files: GuestFile tuples or {guest_path: bytes}, written at every
        start."""
        spec = _native.VMSpec()
        keep = []
        spec.size = ctypes.sizeof(spec)
        spec.flags = ((_VM_NO_NET if no_net else 0) |
                      (_VM_OWN_NETNS if own_netns else 0))
        spec.kernel = _fspath(kernel, "kernel")
        spec.base_image = _fspath(base_image, "base_image")
        spec.initrd = _fspath(initrd, "initrd")
        spec.boot_args = _cstr(boot_args, "boot_args")
        spec.vcpus = _u32(vcpus, "vcpus")
        spec.memory_mib = _u32(memory_mib, "memory_mib")
        if disk_size is not None:
            if isinstance(disk_size, bool) or not isinstance(disk_size, int) \
                    or not 0 <= disk_size < 1 << 64:
                raise _invalid("disk_size must be a byte count")
            spec.disk_size = disk_size
        spec.overlay = _overlay(overlay)
        spec.ssh_authorized_keys = _cstr(ssh_authorized_keys,
                                         "ssh_authorized_keys")
        spec.netns = _cstr(netns, "netns")
        arr, n = _files_array(files, keep)
        if n:
            spec.files = arr
            spec.n_files = n

        out = ctypes.c_void_p()
        with ctx._use() as cptr:
            _call(_lib.vmm_create, ctypes.byref(out), cptr,
                  _cstr(name, "name"), ctypes.byref(spec))
            return cls._own(ctx, out.value)

    @classmethod
    def open(cls, ctx: Context, name: str) -> "VM":
        """A handle to the existing VM called name."""
        out = ctypes.c_void_p()
        with ctx._use() as cptr:
            _call(_lib.vmm_open, ctypes.byref(out), cptr,
                  _cstr(name, "name"))
            return cls._own(ctx, out.value)

    @classmethod
    def list(cls, ctx: Context):
        """Every VM of the context, sorted by name, as ListEntry tuples:
        (name, VM, None), or (name, None, error message) for a record that
        cannot be read."""
        out = ctypes.c_void_p()
        with ctx._use() as cptr:
            _call(_lib.vmm_list, ctypes.byref(out), cptr)
            # The handles belong to the list: it is freed when the last VM
            # taken from it is released.
            owner = _Owner(out.value, _lib.vmm_vm_list_free, ctx._owner)
        entries = []
        try:
            for i in range(_lib.vmm_vm_list_count(owner.ptr)):
                name = _text(_lib.vmm_vm_list_name(owner.ptr, i))
                ptr = _lib.vmm_vm_list_vm(owner.ptr, i)
                if ptr:
                    # Nothing to free of its own; it holds the list.
                    vm = cls._wrap(ctx, _Owner(ptr, _no_free, owner))
                    entries.append(ListEntry(name, vm, None))
                else:
                    error = _text(_lib.vmm_vm_list_error(owner.ptr, i))
                    entries.append(ListEntry(name, None, error))
        finally:
            owner.release()
        return entries

    # --- lifetime of the handle -------------------------------------------

    def _use(self):
        if self._deleted:
            raise VMMError(ErrorCode.ENOTFOUND,
                           "VM %s was deleted" % self._name)
        return _hold(self._owner, self._finalizer,
                     "VM %s: the handle is closed" % self._name)

    def _do(self, fn, *args):
        with self._serial, self._use() as ptr:
            _call(fn, ptr, *args)

    def close(self):
        """Release the handle; the VM keeps running. Closing twice is
        harmless; closing while another thread uses the handle frees it
        when that use ends."""
        self._finalizer()

    @property
    def closed(self):
        return not self._finalizer.alive

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def context(self) -> Context:
        return self._context

    # --- operations -------------------------------------------------------

    def start(self, timeout: Optional[float] = None):
        """Start the stopped VM. timeout (seconds) bounds the wait for the
        VMM, never the VM's life."""
        opts = _native.StartOptions()
        opts.size = ctypes.sizeof(opts)
        opts.timeout_ms = _millis(timeout, "timeout")
        self._do(_lib.vmm_start, ctypes.byref(opts))

    def stop(self, timeout: Optional[float] = None):
        """Ctrl-Alt-Del, wait up to timeout seconds, then SIGKILL."""
        self._do(_lib.vmm_stop, _millis(timeout, "timeout"))

    def kill(self):
        """SIGKILL the VMM and wait until it is gone."""
        self._do(_lib.vmm_kill)

    def pause(self):
        self._do(_lib.vmm_pause)

    def resume(self):
        self._do(_lib.vmm_resume)

    def delete(self, force: bool = False):
        """Delete the VM and everything it owns; with force, kill a
        running VMM first. The handle is released afterwards."""
        with self._serial, self._use() as ptr:
            _call(_lib.vmm_delete, ptr, _DELETE_FORCE if force else 0)
            # From here the C handle is good for vmm_vm_free() only.
            self._deleted = True
        self.close()

    def set_vcpus(self, vcpus: int):
        """Change a stopped VM's vCPU count (1 or even up to 32)."""
        self._do(_lib.vmm_set_vcpus, _u32(vcpus, "vcpus"))

    def set_memory(self, memory_mib: int):
        """Change a stopped VM's memory (MiB, at least 128)."""
        self._do(_lib.vmm_set_memory, _u32(memory_mib, "memory_mib"))

    def refresh(self):
        """Re-read the record and the VMM's liveness."""
        self._do(_lib.vmm_vm_refresh)

    # --- getters ----------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def state(self) -> State:
        with self._serial, self._use() as ptr:
            value = _lib.vmm_vm_state(ptr)
        try:
            return State(value)
        except ValueError:
            return value

    pid = _int_getter(_lib.vmm_vm_pid, "The VMM's pid, or 0 when stopped.")
    vcpus = _int_getter(_lib.vmm_vm_vcpus, "Configured vCPUs.")
    memory_mib = _int_getter(_lib.vmm_vm_memory_mib,
                             "Configured memory in MiB.")
    disk_size = _int_getter(_lib.vmm_vm_disk_size,
                            "Root disk size in bytes.")
    kernel = _string_getter(_lib.vmm_vm_kernel, "The kernel image path.")
    initrd = _string_getter(_lib.vmm_vm_initrd, "The initrd path, or None.")
    base_image = _string_getter(_lib.vmm_vm_base_image,
                                "The base image path.")
    boot_args = _string_getter(_lib.vmm_vm_boot_args,
                               "Boot arguments as given.")
    guest_ip = _string_getter(_lib.vmm_vm_guest_ip,
                              "The guest's IPv4 address, or None.")
    host_ip = _string_getter(_lib.vmm_vm_host_ip,
                             "The host side's IPv4 address, or None.")
    mac = _string_getter(_lib.vmm_vm_mac, "The guest's MAC, or None.")
    tap = _string_getter(_lib.vmm_vm_tap, "The tap's name, or None.")
    netns = _string_getter(_lib.vmm_vm_netns,
                           "The network namespace, or None.")
    api_socket = _string_getter(_lib.vmm_vm_api_socket,
                                "The API socket's path.")
    overlay_driver = _string_getter(_lib.vmm_vm_overlay_driver,
                                    "\"dm-snapshot\" or \"copy\".")
    disk = _string_getter(_lib.vmm_vm_disk,
                          "The root disk as the VMM opens it.")
    log_path = _string_getter(_lib.vmm_vm_log_path, "The VMM's log file.")
    known_hosts = _string_getter(_lib.vmm_vm_known_hosts,
                                 "known_hosts with the guest's host key.")
    last_exit = _string_getter(_lib.vmm_vm_last_exit,
                               "How the VMM last ended, or None.")

    def __repr__(self):
        if self._deleted:
            return "<libvmm.VM %r (deleted)>" % self._name
        if self.closed:
            return "<libvmm.VM %r (closed)>" % self._name
        return "<libvmm.VM %r %s pid=%d>" % (self._name, self.state.name
                                             if isinstance(self.state, State)
                                             else self.state, self.pid)


def _no_free(ptr):
    pass


def _overlay(value):
    if isinstance(value, Overlay):
        return value
    names = {"auto": Overlay.AUTO, "dm-snapshot": Overlay.DM_SNAPSHOT,
             "copy": Overlay.COPY}
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _invalid("overlay must be an Overlay or one of %s" %
                   ", ".join(sorted(names)))
