"""The C side of the binding: the shared library and its prototypes.

Nothing here is public. Every structure mirrors a declaration of
include/libvmm/*.h field for field; the tests compare their sizes and
offsets with what a C compiler makes of the headers.

SPDX-License-Identifier: MIT
"""

import ctypes
import os

# The oldest library this binding speaks to, as VMM_VERSION_NUMBER encodes
# it (0xMMmmpp). While the major version is 0, a newer minor may change the
# ABI, so the binding accepts its own major.minor and newer patches only.
MIN_VERSION = 0x000100

c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_uint32_p = ctypes.POINTER(ctypes.c_uint32)

# Return values that are strings are declared c_void_p, not c_char_p:
# c_char_p would turn NULL into None, which is fine, but it also hides the
# pointer, and the binding wants one explicit place that copies borrowed
# bytes (string_at) before the next call can invalidate them.
LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int32, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_uint64, ctypes.c_uint64,
                               ctypes.c_void_p)


class ContextOptions(ctypes.Structure):
    """vmm_context_options."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("state_dir", ctypes.c_char_p),
        ("firecracker", ctypes.c_char_p),
        ("log_fn", LOG_FN),
        ("log_user", ctypes.c_void_p),
        ("log_level", ctypes.c_int32),
        ("api_timeout_ms", ctypes.c_uint32),
        ("progress_fn", PROGRESS_FN),
        ("progress_user", ctypes.c_void_p),
        ("net_pool", ctypes.c_char_p),
    ]


class Error(ctypes.Structure):
    """vmm_error: the fields this binding knows; the library may append."""
    _fields_ = [
        ("code", ctypes.c_int32),
        ("os_error", ctypes.c_int32),
        ("http_status", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
        ("message", ctypes.c_void_p),
        ("fault_message", ctypes.c_void_p),
    ]


class GuestFile(ctypes.Structure):
    """vmm_guest_file."""
    _fields_ = [
        ("path", ctypes.c_char_p),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_uint64),
        ("mode", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    ]


class VMSpec(ctypes.Structure):
    """vmm_vm_spec."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("kernel", ctypes.c_char_p),
        ("initrd", ctypes.c_char_p),
        ("base_image", ctypes.c_char_p),
        ("boot_args", ctypes.c_char_p),
        ("vcpus", ctypes.c_uint32),
        ("memory_mib", ctypes.c_uint32),
        ("disk_size", ctypes.c_uint64),
        ("overlay", ctypes.c_int32),
        ("reserved", ctypes.c_uint32),
        ("ssh_authorized_keys", ctypes.c_char_p),
        ("netns", ctypes.c_char_p),
        ("files", ctypes.POINTER(GuestFile)),
        ("n_files", ctypes.c_uint32),
        ("reserved2", ctypes.c_uint32),
    ]


class StartOptions(ctypes.Structure):
    """vmm_start_options."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("timeout_ms", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    ]


# Opaque handles travel as c_void_p; an int of 0 or None is NULL.
_H = ctypes.c_void_p
_H_P = ctypes.POINTER(ctypes.c_void_p)
_S = ctypes.c_char_p
_I32 = ctypes.c_int32
_U32 = ctypes.c_uint32
_U64 = ctypes.c_uint64
_INT = ctypes.c_int

# name: (restype, argtypes). Strings returned by the library are
# c_void_p (see above); strings passed to it are c_char_p (bytes).
PROTOTYPES = {
    "vmm_version": (ctypes.c_void_p, [c_uint32_p]),
    "vmm_error_last": (ctypes.POINTER(Error), []),
    "vmm_strerror": (ctypes.c_void_p, [_I32]),

    "vmm_context_new": (_INT, [_H_P, ctypes.POINTER(ContextOptions)]),
    "vmm_context_free": (None, [_H]),
    "vmm_context_state_dir": (ctypes.c_void_p, [_H]),
    "vmm_context_firecracker": (ctypes.c_void_p, [_H]),

    "vmm_create": (_INT, [_H_P, _H, _S, ctypes.POINTER(VMSpec)]),
    "vmm_open": (_INT, [_H_P, _H, _S]),
    "vmm_start": (_INT, [_H, ctypes.POINTER(StartOptions)]),
    "vmm_stop": (_INT, [_H, _U32]),
    "vmm_kill": (_INT, [_H]),
    "vmm_pause": (_INT, [_H]),
    "vmm_resume": (_INT, [_H]),
    "vmm_delete": (_INT, [_H, _U32]),
    "vmm_set_vcpus": (_INT, [_H, _U32]),
    "vmm_set_memory": (_INT, [_H, _U32]),
    "vmm_vm_refresh": (_INT, [_H]),
    "vmm_vm_free": (None, [_H]),

    "vmm_vm_name": (ctypes.c_void_p, [_H]),
    "vmm_vm_state": (_I32, [_H]),
    "vmm_vm_pid": (_I32, [_H]),
    "vmm_vm_vcpus": (_U32, [_H]),
    "vmm_vm_memory_mib": (_U32, [_H]),
    "vmm_vm_disk_size": (_U64, [_H]),
    "vmm_vm_kernel": (ctypes.c_void_p, [_H]),
    "vmm_vm_initrd": (ctypes.c_void_p, [_H]),
    "vmm_vm_base_image": (ctypes.c_void_p, [_H]),
    "vmm_vm_boot_args": (ctypes.c_void_p, [_H]),
    "vmm_vm_guest_ip": (ctypes.c_void_p, [_H]),
    "vmm_vm_host_ip": (ctypes.c_void_p, [_H]),
    "vmm_vm_mac": (ctypes.c_void_p, [_H]),
    "vmm_vm_tap": (ctypes.c_void_p, [_H]),
    "vmm_vm_netns": (ctypes.c_void_p, [_H]),
    "vmm_vm_api_socket": (ctypes.c_void_p, [_H]),
    "vmm_vm_overlay_driver": (ctypes.c_void_p, [_H]),
    "vmm_vm_disk": (ctypes.c_void_p, [_H]),
    "vmm_vm_log_path": (ctypes.c_void_p, [_H]),
    "vmm_vm_known_hosts": (ctypes.c_void_p, [_H]),
    "vmm_vm_last_exit": (ctypes.c_void_p, [_H]),

    "vmm_list": (_INT, [_H_P, _H]),
    "vmm_vm_list_count": (_U32, [_H]),
    "vmm_vm_list_name": (ctypes.c_void_p, [_H, _U32]),
    "vmm_vm_list_vm": (ctypes.c_void_p, [_H, _U32]),
    "vmm_vm_list_error": (ctypes.c_void_p, [_H, _U32]),
    "vmm_vm_list_free": (None, [_H]),
}

DEFAULT_LIBRARY = "libvmm.so.0"


def load():
    """Open the library named by LIBVMM_LIBRARY (default libvmm.so.0),
    declare every prototype, and check the run-time version.

    Returns (CDLL, version string, version number).
    """
    path = os.environ.get("LIBVMM_LIBRARY") or DEFAULT_LIBRARY
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError("libvmm: cannot load %s: %s" % (path, e)) from e

    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise ImportError("libvmm: %s lacks the symbol %s; it is older "
                              "than this binding" % (path, name)) from None
        fn.restype = restype
        fn.argtypes = argtypes

    number = ctypes.c_uint32()
    text = ctypes.string_at(lib.vmm_version(ctypes.byref(number)))
    text = text.decode("ascii", "replace")
    have = number.value
    major, minor = have >> 16, (have >> 8) & 0xff
    need_major, need_minor = MIN_VERSION >> 16, (MIN_VERSION >> 8) & 0xff
    if (major != need_major or (major == 0 and minor != need_minor) or
            have < MIN_VERSION):
        raise ImportError("libvmm: %s is version %s; this binding needs "
                          "%d.%d.%d or a compatible newer one" %
                          (path, text, need_major, need_minor,
                           MIN_VERSION & 0xff))
    return lib, text, have
