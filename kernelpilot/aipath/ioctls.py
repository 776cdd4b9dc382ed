"""ioctl requests of GPU and accelerator drivers, named from the drivers' public headers.

Linux encodes most requests with _IOC: dir (2 bits) << 30 | size (14) << 16 | type (8) << 8 | nr (8).
Which table applies depends on the device the fd refers to: NVIDIA's /dev/nvidiactl and /dev/nvidiaN
(type 'F': escapes 200-218 and resource-manager calls 0x27-0x5F), /dev/nvidia-uvm (plain integers),
DRM render/card nodes and /dev/accel/* (type 'd': core 0x00-0x3f and 0xa0-0xff, the driver's own
range 0x40-0x9f), AMD's /dev/kfd (type 'K'). Where a name needs the argument (the object class of
NV_ESC_RM_ALLOC, the command of NV_ESC_RM_CONTROL) the probe copies its first bytes; see
`detail_of`. Sources: open-gpu-kernel-modules nv-ioctl-numbers.h, nv_escape.h, nvos.h,
g_allclasses.h, uvm_ioctl.h, uvm_linux_ioctl.h; include/uapi/drm/{drm,amdgpu_drm,i915_drm,xe_drm,
ivpu_accel}.h; include/uapi/linux/kfd_ioctl.h."""
from __future__ import annotations

import os
import struct
from functools import lru_cache

CATEGORIES = ("alloc", "map", "submit", "sync", "query", "other")

# ---- NVIDIA (type 'F'; the driver ignores the type and size, only nr matters) ----
NV_ESCAPES = {  # nr: (name, category)
    0x27: ("NV_ESC_RM_ALLOC_MEMORY", "alloc"), 0x28: ("NV_ESC_RM_ALLOC_OBJECT", "alloc"),
    0x29: ("NV_ESC_RM_FREE", "alloc"), 0x2A: ("NV_ESC_RM_CONTROL", "query"),
    0x2B: ("NV_ESC_RM_ALLOC", "alloc"), 0x32: ("NV_ESC_RM_CONFIG_GET", "query"),
    0x33: ("NV_ESC_RM_CONFIG_SET", "other"), 0x34: ("NV_ESC_RM_DUP_OBJECT", "alloc"),
    0x35: ("NV_ESC_RM_SHARE", "other"), 0x37: ("NV_ESC_RM_CONFIG_GET_EX", "query"),
    0x38: ("NV_ESC_RM_CONFIG_SET_EX", "other"), 0x39: ("NV_ESC_RM_I2C_ACCESS", "other"),
    0x41: ("NV_ESC_RM_IDLE_CHANNELS", "sync"), 0x4A: ("NV_ESC_RM_VID_HEAP_CONTROL", "alloc"),
    0x4D: ("NV_ESC_RM_ACCESS_REGISTRY", "query"), 0x4E: ("NV_ESC_RM_MAP_MEMORY", "map"),
    0x4F: ("NV_ESC_RM_UNMAP_MEMORY", "map"), 0x52: ("NV_ESC_RM_GET_EVENT_DATA", "sync"),
    0x54: ("NV_ESC_RM_ALLOC_CONTEXT_DMA2", "alloc"), 0x56: ("NV_ESC_RM_ADD_VBLANK_CALLBACK", "other"),
    0x57: ("NV_ESC_RM_MAP_MEMORY_DMA", "map"), 0x58: ("NV_ESC_RM_UNMAP_MEMORY_DMA", "map"),
    0x59: ("NV_ESC_RM_BIND_CONTEXT_DMA", "map"), 0x5C: ("NV_ESC_RM_EXPORT_OBJECT_TO_FD", "other"),
    0x5D: ("NV_ESC_RM_IMPORT_OBJECT_FROM_FD", "other"),
    0x5E: ("NV_ESC_RM_UPDATE_DEVICE_MAPPING_INFO", "map"), 0x5F: ("NV_ESC_RM_LOCKLESS_DIAGNOSTIC", "query"),
    200: ("NV_ESC_CARD_INFO", "query"), 201: ("NV_ESC_REGISTER_FD", "other"),
    206: ("NV_ESC_ALLOC_OS_EVENT", "sync"), 207: ("NV_ESC_FREE_OS_EVENT", "sync"),
    209: ("NV_ESC_STATUS_CODE", "query"), 210: ("NV_ESC_CHECK_VERSION_STR", "query"),
    211: ("NV_ESC_IOCTL_XFER_CMD", "other"), 212: ("NV_ESC_ATTACH_GPUS_TO_FD", "other"),
    213: ("NV_ESC_QUERY_DEVICE_INTR", "query"), 214: ("NV_ESC_SYS_PARAMS", "query"),
    215: ("NV_ESC_EXPORT_TO_DMABUF_FD", "map"), 216: ("NV_ESC_NUMA_INFO", "query"),
    217: ("NV_ESC_SET_NUMA_STATUS", "other"), 218: ("NV_ESC_WAIT_OPEN_COMPLETE", "sync"),
}
NV_ESC_RM_CONTROL, NV_ESC_RM_ALLOC, NV_ESC_IOCTL_XFER_CMD = 0x2A, 0x2B, 211

# Object classes (g_allclasses.h): what an NV_ESC_RM_ALLOC creates.
NV_CLASSES = {
    0x0000: "NV01_ROOT", 0x0001: "NV01_ROOT_NON_PRIV", 0x0002: "NV01_CONTEXT_DMA", 0x0005: "NV01_EVENT",
    0x003E: "NV01_MEMORY_SYSTEM", 0x003F: "NV01_MEMORY_LOCAL_PRIVILEGED", 0x0040: "NV01_MEMORY_LOCAL_USER",
    0x0041: "NV01_ROOT_CLIENT", 0x0042: "NV_MEMORY_EXTENDED_USER", 0x0070: "NV01_MEMORY_VIRTUAL",
    0x0071: "NV01_MEMORY_SYSTEM_OS_DESCRIPTOR", 0x0073: "NV04_DISPLAY_COMMON", 0x0079: "NV01_EVENT_OS_EVENT",
    0x0080: "NV01_DEVICE_0", 0x00DA: "NV_SEMAPHORE_SURFACE", 0x00DE: "RM_USER_SHARED_DATA",
    0x00E0: "NV_MEMORY_EXPORT", 0x00F1: "NV_IMEX_SESSION", 0x00F8: "NV_MEMORY_FABRIC",
    0x00FB: "NV_MEMORY_FABRIC_IMPORTED_REF", 0x00FD: "NV_MEMORY_MULTICAST_FABRIC", 0x00FE: "NV_MEMORY_MAPPER",
    0x2080: "NV20_SUBDEVICE_0", 0x2081: "NV2081_BINAPI", 0x208F: "NV20_SUBDEVICE_DIAG", 0x503B: "NV50_P2P",
    0x503C: "NV50_THIRD_PARTY_P2P", 0x50A0: "NV50_MEMORY_VIRTUAL", 0x83DE: "GT200_DEBUGGER",
    0x900E: "MPS_COMPUTE", 0x902D: "FERMI_TWOD_A", 0x9067: "FERMI_CONTEXT_SHARE_A", 0x9072: "GF100_DISP_SW",
    0x9096: "GF100_ZBC_CLEAR", 0x90CC: "GF100_PROFILER", 0x90CD: "NV_EVENT_BUFFER",
    0x90CE: "NV01_MEMORY_DEVICELESS", 0x90E6: "GF100_SUBDEVICE_MASTER", 0x90E7: "GF100_SUBDEVICE_INFOROM",
    0x90F1: "FERMI_VASPACE_A", 0xA06C: "KEPLER_CHANNEL_GROUP_A", 0xA06F: "KEPLER_CHANNEL_GPFIFO_A",
    0xA0BC: "NVENC_SW_SESSION", 0xA140: "KEPLER_INLINE_TO_MEMORY_B", 0xB1CC: "MAXWELL_PROFILER_CONTEXT",
    0xB2CC: "MAXWELL_PROFILER_DEVICE", 0xC06F: "PASCAL_CHANNEL_GPFIFO_A", 0xC361: "VOLTA_USERMODE_A",
    0xC36F: "VOLTA_CHANNEL_GPFIFO_A", 0xC3C0: "VOLTA_COMPUTE_A", 0xC3B5: "VOLTA_DMA_COPY_A",
    0xC461: "TURING_USERMODE_A", 0xC46F: "TURING_CHANNEL_GPFIFO_A", 0xC56F: "AMPERE_CHANNEL_GPFIFO_A",
    0xC597: "TURING_A", 0xC5B5: "TURING_DMA_COPY_A", 0xC5C0: "TURING_COMPUTE_A", 0xC661: "HOPPER_USERMODE_A",
    0xC697: "AMPERE_A", 0xC6B5: "AMPERE_DMA_COPY_A", 0xC6C0: "AMPERE_COMPUTE_A", 0xC761: "BLACKWELL_USERMODE_A",
    0xC7B5: "AMPERE_DMA_COPY_B", 0xC7C0: "AMPERE_COMPUTE_B", 0xC86F: "HOPPER_CHANNEL_GPFIFO_A",
    0xC8B5: "HOPPER_DMA_COPY_A", 0xC96F: "BLACKWELL_CHANNEL_GPFIFO_A", 0xC997: "ADA_A", 0xC9B5: "BLACKWELL_DMA_COPY_A",
    0xC9C0: "ADA_COMPUTE_A", 0xCA6F: "BLACKWELL_CHANNEL_GPFIFO_B", 0xCAB5: "BLACKWELL_DMA_COPY_B",
    0xCB33: "NV_CONFIDENTIAL_COMPUTE", 0xCB97: "HOPPER_A", 0xCBA2: "HOPPER_SEC2_WORK_LAUNCH_A",
    0xCBC0: "HOPPER_COMPUTE_A", 0xCD40: "BLACKWELL_INLINE_TO_MEMORY_A", 0xCD97: "BLACKWELL_A",
    0xCDC0: "BLACKWELL_COMPUTE_A", 0xCE97: "BLACKWELL_B", 0xCEC0: "BLACKWELL_COMPUTE_B",
}
# The interface a control command belongs to: its upper 16 bits (ctrl/ctrlXXXX/*.h).
NV_CTRL_INTERFACES = {0x0000: "NV0000", 0x0080: "NV0080", 0x2080: "NV2080", 0x0041: "NV0041", 0x003E: "NV003E",
                      0x0073: "NV0073", 0x00F1: "NV00F1", 0x00F8: "NV00F8", 0x503C: "NV503C", 0x83DE: "NV83DE",
                      0x90F1: "NV90F1", 0xA06C: "NVA06C", 0xA06F: "NVA06F", 0xC36F: "NVC36F", 0x906F: "NV906F",
                      0x0002: "NV0002", 0x0005: "NV0005", 0x00DA: "NV00DA", 0x90CD: "NV90CD", 0x90E6: "NV90E6"}
NV_CONTROLS = {  # the few control commands CUDA's start issues most, by their header names
    0x00000101: "NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION", 0x00000201: "NV0000_CTRL_CMD_GPU_GET_ATTACHED_IDS",
    0x00000202: "NV0000_CTRL_CMD_GPU_GET_ID_INFO", 0x00000205: "NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2",
    0x00000214: "NV0000_CTRL_CMD_GPU_GET_PROBED_IDS", 0x00000215: "NV0000_CTRL_CMD_GPU_ATTACH_IDS",
    0x00000216: "NV0000_CTRL_CMD_GPU_DETACH_IDS", 0x0000021B: "NV0000_CTRL_CMD_GPU_GET_PCI_INFO",
    0x00000D01: "NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE",
    0x00000D04: "NV0000_CTRL_CMD_CLIENT_SET_INHERITED_SHARE_POLICY",
    0x00800201: "NV0080_CTRL_CMD_GPU_GET_CLASSLIST", 0x00800280: "NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES",
    0x20800110: "NV2080_CTRL_CMD_GPU_GET_NAME_STRING", 0x20800111: "NV2080_CTRL_CMD_GPU_GET_SHORT_NAME_STRING",
    0x20801801: "NV2080_CTRL_CMD_BUS_GET_PCI_INFO",
}

# /dev/nvidia-uvm: plain integer commands (uvm_ioctl.h, uvm_linux_ioctl.h).
UVM_IOCTLS = {
    1: ("UVM_RESERVE_VA", "alloc"), 2: ("UVM_RELEASE_VA", "alloc"), 3: ("UVM_REGION_COMMIT", "alloc"),
    4: ("UVM_REGION_DECOMMIT", "alloc"), 5: ("UVM_REGION_SET_STREAM", "other"), 6: ("UVM_SET_STREAM_RUNNING", "other"),
    7: ("UVM_SET_STREAM_STOPPED", "other"), 9: ("UVM_RUN_TEST", "other"), 10: ("UVM_ADD_SESSION", "other"),
    11: ("UVM_REMOVE_SESSION", "other"), 12: ("UVM_ENABLE_COUNTERS", "other"), 13: ("UVM_MAP_COUNTER", "map"),
    14: ("UVM_CREATE_EVENT_QUEUE", "sync"), 15: ("UVM_REMOVE_EVENT_QUEUE", "sync"), 16: ("UVM_MAP_EVENT_QUEUE", "map"),
    17: ("UVM_EVENT_CTRL", "sync"), 18: ("UVM_REGISTER_MPS_SERVER", "other"), 19: ("UVM_REGISTER_MPS_CLIENT", "other"),
    20: ("UVM_GET_GPU_UUID_TABLE", "query"), 21: ("UVM_REGION_SET_BACKING", "alloc"),
    22: ("UVM_REGION_UNSET_BACKING", "alloc"), 23: ("UVM_CREATE_RANGE_GROUP", "alloc"),
    24: ("UVM_DESTROY_RANGE_GROUP", "alloc"), 25: ("UVM_REGISTER_GPU_VASPACE", "other"),
    26: ("UVM_UNREGISTER_GPU_VASPACE", "other"), 27: ("UVM_REGISTER_CHANNEL", "other"),
    28: ("UVM_UNREGISTER_CHANNEL", "other"), 29: ("UVM_ENABLE_PEER_ACCESS", "other"),
    30: ("UVM_DISABLE_PEER_ACCESS", "other"), 31: ("UVM_SET_RANGE_GROUP", "other"),
    33: ("UVM_MAP_EXTERNAL_ALLOCATION", "map"), 34: ("UVM_FREE", "alloc"), 35: ("UVM_MEM_MAP", "map"),
    36: ("UVM_DEBUG_ACCESS_MEMORY", "other"), 37: ("UVM_REGISTER_GPU", "other"), 38: ("UVM_UNREGISTER_GPU", "other"),
    39: ("UVM_PAGEABLE_MEM_ACCESS", "query"), 40: ("UVM_PREVENT_MIGRATION_RANGE_GROUPS", "other"),
    41: ("UVM_ALLOW_MIGRATION_RANGE_GROUPS", "other"), 42: ("UVM_SET_PREFERRED_LOCATION", "other"),
    43: ("UVM_UNSET_PREFERRED_LOCATION", "other"), 44: ("UVM_ENABLE_READ_DUPLICATION", "other"),
    45: ("UVM_DISABLE_READ_DUPLICATION", "other"), 46: ("UVM_SET_ACCESSED_BY", "other"),
    47: ("UVM_UNSET_ACCESSED_BY", "other"), 51: ("UVM_MIGRATE", "map"), 53: ("UVM_MIGRATE_RANGE_GROUP", "map"),
    54: ("UVM_ENABLE_SYSTEM_WIDE_ATOMICS", "other"), 55: ("UVM_DISABLE_SYSTEM_WIDE_ATOMICS", "other"),
    56: ("UVM_TOOLS_INIT_EVENT_TRACKER", "other"), 57: ("UVM_TOOLS_SET_NOTIFICATION_THRESHOLD", "other"),
    58: ("UVM_TOOLS_EVENT_QUEUE_ENABLE_EVENTS", "other"), 59: ("UVM_TOOLS_EVENT_QUEUE_DISABLE_EVENTS", "other"),
    60: ("UVM_TOOLS_ENABLE_COUNTERS", "other"), 61: ("UVM_TOOLS_DISABLE_COUNTERS", "other"),
    62: ("UVM_TOOLS_READ_PROCESS_MEMORY", "other"), 63: ("UVM_TOOLS_WRITE_PROCESS_MEMORY", "other"),
    64: ("UVM_TOOLS_GET_PROCESSOR_UUID_TABLE", "query"), 65: ("UVM_MAP_DYNAMIC_PARALLELISM_REGION", "map"),
    66: ("UVM_UNMAP_EXTERNAL", "map"), 67: ("UVM_TOOLS_FLUSH_EVENTS", "sync"), 68: ("UVM_ALLOC_SEMAPHORE_POOL", "alloc"),
    69: ("UVM_CLEAN_UP_ZOMBIE_RESOURCES", "other"), 70: ("UVM_PAGEABLE_MEM_ACCESS_ON_GPU", "query"),
    71: ("UVM_POPULATE_PAGEABLE", "map"), 72: ("UVM_VALIDATE_VA_RANGE", "query"),
    73: ("UVM_CREATE_EXTERNAL_RANGE", "alloc"), 74: ("UVM_MAP_EXTERNAL_SPARSE", "map"),
    75: ("UVM_MM_INITIALIZE", "other"), 2047: ("UVM_IS_8_SUPPORTED", "query"),
    0x30000001: ("UVM_INITIALIZE", "other"), 0x30000002: ("UVM_DEINITIALIZE", "other"),
}

# ---- DRM (type 'd'): core numbers, then each driver's 0x40-0x9f range (nr - 0x40) ----
DRM_CORE = {
    0x00: ("DRM_IOCTL_VERSION", "query"), 0x01: ("DRM_IOCTL_GET_UNIQUE", "query"), 0x02: ("DRM_IOCTL_GET_MAGIC", "query"),
    0x03: ("DRM_IOCTL_IRQ_BUSID", "query"), 0x04: ("DRM_IOCTL_GET_MAP", "query"), 0x05: ("DRM_IOCTL_GET_CLIENT", "query"),
    0x06: ("DRM_IOCTL_GET_STATS", "query"), 0x07: ("DRM_IOCTL_SET_VERSION", "other"),
    0x08: ("DRM_IOCTL_MODESET_CTL", "other"), 0x09: ("DRM_IOCTL_GEM_CLOSE", "alloc"),
    0x0A: ("DRM_IOCTL_GEM_FLINK", "other"), 0x0B: ("DRM_IOCTL_GEM_OPEN", "alloc"), 0x0C: ("DRM_IOCTL_GET_CAP", "query"),
    0x0D: ("DRM_IOCTL_SET_CLIENT_CAP", "other"), 0x10: ("DRM_IOCTL_SET_UNIQUE", "other"),
    0x11: ("DRM_IOCTL_AUTH_MAGIC", "other"), 0x1E: ("DRM_IOCTL_SET_MASTER", "other"),
    0x1F: ("DRM_IOCTL_DROP_MASTER", "other"), 0x2D: ("DRM_IOCTL_PRIME_HANDLE_TO_FD", "map"),
    0x2E: ("DRM_IOCTL_PRIME_FD_TO_HANDLE", "map"), 0x3A: ("DRM_IOCTL_WAIT_VBLANK", "sync"),
    0x3B: ("DRM_IOCTL_CRTC_GET_SEQUENCE", "query"), 0x3C: ("DRM_IOCTL_CRTC_QUEUE_SEQUENCE", "sync"),
    0xA0: ("DRM_IOCTL_MODE_GETRESOURCES", "query"), 0xA1: ("DRM_IOCTL_MODE_GETCRTC", "query"),
    0xA2: ("DRM_IOCTL_MODE_SETCRTC", "other"), 0xA7: ("DRM_IOCTL_MODE_GETCONNECTOR", "query"),
    0xAA: ("DRM_IOCTL_MODE_GETPROPERTY", "query"), 0xAD: ("DRM_IOCTL_MODE_GETFB", "query"),
    0xAE: ("DRM_IOCTL_MODE_ADDFB", "alloc"), 0xAF: ("DRM_IOCTL_MODE_RMFB", "alloc"),
    0xB0: ("DRM_IOCTL_MODE_PAGE_FLIP", "submit"), 0xB2: ("DRM_IOCTL_MODE_CREATE_DUMB", "alloc"),
    0xB3: ("DRM_IOCTL_MODE_MAP_DUMB", "map"), 0xB4: ("DRM_IOCTL_MODE_DESTROY_DUMB", "alloc"),
    0xB8: ("DRM_IOCTL_MODE_ADDFB2", "alloc"), 0xBC: ("DRM_IOCTL_MODE_ATOMIC", "submit"),
    0xBF: ("DRM_IOCTL_SYNCOBJ_CREATE", "sync"), 0xC0: ("DRM_IOCTL_SYNCOBJ_DESTROY", "sync"),
    0xC1: ("DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD", "sync"), 0xC2: ("DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE", "sync"),
    0xC3: ("DRM_IOCTL_SYNCOBJ_WAIT", "sync"), 0xC4: ("DRM_IOCTL_SYNCOBJ_RESET", "sync"),
    0xC5: ("DRM_IOCTL_SYNCOBJ_SIGNAL", "sync"), 0xCA: ("DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT", "sync"),
    0xCB: ("DRM_IOCTL_SYNCOBJ_QUERY", "sync"), 0xCC: ("DRM_IOCTL_SYNCOBJ_TRANSFER", "sync"),
    0xCD: ("DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL", "sync"), 0xCE: ("DRM_IOCTL_MODE_GETFB2", "query"),
    0xCF: ("DRM_IOCTL_SYNCOBJ_EVENTFD", "sync"),
}


def _table(prefix: str, rows: str) -> dict[int, tuple[str, str]]:
    """'0x00 NAME cat, 0x01 NAME cat, ...' -> {nr: (prefix + NAME, cat)}."""
    out = {}
    for item in rows.split(","):
        nr, name, cat = item.split()
        out[int(nr, 16)] = (prefix + name, cat)
    return out


DRM_DRIVERS = {
    "amdgpu": _table("DRM_IOCTL_AMDGPU_", "0x00 GEM_CREATE alloc, 0x01 GEM_MMAP map, 0x02 CTX other, "
                     "0x03 BO_LIST submit, 0x04 CS submit, 0x05 INFO query, 0x06 GEM_METADATA other, "
                     "0x07 GEM_WAIT_IDLE sync, 0x08 GEM_VA map, 0x09 WAIT_CS sync, 0x10 GEM_OP other, "
                     "0x11 GEM_USERPTR alloc, 0x12 WAIT_FENCES sync, 0x13 VM other, 0x14 FENCE_TO_HANDLE sync, "
                     "0x15 SCHED other, 0x16 USERQ submit, 0x17 USERQ_SIGNAL sync, 0x18 USERQ_WAIT sync"),
    "i915": _table("DRM_IOCTL_I915_", "0x00 INIT other, 0x01 FLUSH sync, 0x02 FLIP submit, 0x03 BATCHBUFFER submit, "
                   "0x04 IRQ_EMIT sync, 0x05 IRQ_WAIT sync, 0x06 GETPARAM query, 0x07 SETPARAM other, "
                   "0x08 ALLOC alloc, 0x09 FREE alloc, 0x0b CMDBUFFER submit, 0x13 GEM_INIT other, "
                   "0x14 GEM_EXECBUFFER submit, 0x15 GEM_PIN map, 0x16 GEM_UNPIN map, 0x17 GEM_BUSY sync, "
                   "0x18 GEM_THROTTLE sync, 0x1b GEM_CREATE alloc, 0x1c GEM_PREAD other, 0x1d GEM_PWRITE other, "
                   "0x1e GEM_MMAP map, 0x1f GEM_SET_DOMAIN sync, 0x20 GEM_SW_FINISH sync, 0x21 GEM_SET_TILING other, "
                   "0x22 GEM_GET_TILING query, 0x23 GEM_GET_APERTURE query, 0x24 GEM_MMAP_OFFSET map, "
                   "0x25 GET_PIPE_FROM_CRTC_ID query, 0x26 GEM_MADVISE other, 0x29 GEM_EXECBUFFER2 submit, "
                   "0x2c GEM_WAIT sync, 0x2d GEM_CONTEXT_CREATE other, 0x2e GEM_CONTEXT_DESTROY other, "
                   "0x2f GEM_SET_CACHING other, 0x30 GEM_GET_CACHING query, 0x31 REG_READ query, "
                   "0x32 GET_RESET_STATS query, 0x33 GEM_USERPTR alloc, 0x34 GEM_CONTEXT_GETPARAM query, "
                   "0x35 GEM_CONTEXT_SETPARAM other, 0x36 PERF_OPEN other, 0x39 QUERY query, "
                   "0x3a GEM_VM_CREATE alloc, 0x3b GEM_VM_DESTROY alloc, 0x3c GEM_CREATE_EXT alloc"),
    "xe": _table("DRM_IOCTL_XE_", "0x00 DEVICE_QUERY query, 0x01 GEM_CREATE alloc, 0x02 GEM_MMAP_OFFSET map, "
                 "0x03 VM_CREATE alloc, 0x04 VM_DESTROY alloc, 0x05 VM_BIND map, 0x06 EXEC_QUEUE_CREATE other, "
                 "0x07 EXEC_QUEUE_DESTROY other, 0x08 EXEC_QUEUE_GET_PROPERTY query, 0x09 EXEC submit, "
                 "0x0a WAIT_USER_FENCE sync, 0x0b OBSERVATION other, 0x0c MADVISE other"),
    "intel_vpu": _table("DRM_IOCTL_IVPU_", "0x00 GET_PARAM query, 0x01 SET_PARAM other, 0x02 BO_CREATE alloc, "
                        "0x03 BO_INFO query, 0x05 SUBMIT submit, 0x06 BO_WAIT sync, 0x07 METRIC_STREAMER_START other, "
                        "0x08 METRIC_STREAMER_STOP other, 0x09 METRIC_STREAMER_GET_DATA other, "
                        "0x0a METRIC_STREAMER_GET_INFO query"),
}
DRM_DRIVERS["ivpu"] = DRM_DRIVERS["intel_vpu"]

KFD = _table("AMDKFD_IOC_", "0x01 GET_VERSION query, 0x02 CREATE_QUEUE other, 0x03 DESTROY_QUEUE other, "
             "0x04 SET_MEMORY_POLICY other, 0x05 GET_CLOCK_COUNTERS query, 0x06 GET_PROCESS_APERTURES query, "
             "0x07 UPDATE_QUEUE other, 0x08 CREATE_EVENT sync, 0x09 DESTROY_EVENT sync, 0x0a SET_EVENT sync, "
             "0x0b RESET_EVENT sync, 0x0c WAIT_EVENTS sync, 0x11 SET_SCRATCH_BACKING_VA other, "
             "0x12 GET_TILE_CONFIG query, 0x13 SET_TRAP_HANDLER other, 0x14 GET_PROCESS_APERTURES_NEW query, "
             "0x15 ACQUIRE_VM other, 0x16 ALLOC_MEMORY_OF_GPU alloc, 0x17 FREE_MEMORY_OF_GPU alloc, "
             "0x18 MAP_MEMORY_TO_GPU map, 0x19 UNMAP_MEMORY_FROM_GPU map, 0x1a SET_CU_MASK other, "
             "0x1b GET_QUEUE_WAVE_STATE query, 0x1c GET_DMABUF_INFO query, 0x1d IMPORT_DMABUF map, "
             "0x1e ALLOC_QUEUE_GWS other, 0x1f SMI_EVENTS other, 0x20 SVM map, 0x21 SET_XNACK_MODE other, "
             "0x22 CRIU_OP other, 0x23 AVAILABLE_MEMORY query, 0x24 EXPORT_DMABUF map, 0x25 RUNTIME_ENABLE other, "
             "0x26 DBG_TRAP other")

# Requests any character device may see (terminals, loop devices, generic file ioctls).
GENERIC = {0x5401: ("TCGETS", "query"), 0x5402: ("TCSETS", "other"), 0x540F: ("TIOCGPGRP", "query"),
           0x5410: ("TIOCSPGRP", "other"), 0x5413: ("TIOCGWINSZ", "query"), 0x5414: ("TIOCSWINSZ", "other"),
           0x541B: ("FIONREAD", "query"), 0x5421: ("FIONBIO", "other"), 0x5451: ("FIOCLEX", "other"),
           0x5450: ("FIONCLEX", "other"), 0x4C00: ("LOOP_SET_FD", "other"), 0x4C01: ("LOOP_CLR_FD", "other"),
           0x4C02: ("LOOP_SET_STATUS", "other"), 0x4C03: ("LOOP_GET_STATUS", "query"),
           0x4C04: ("LOOP_SET_STATUS64", "other"), 0x4C05: ("LOOP_GET_STATUS64", "query"),
           0x4C06: ("LOOP_CHANGE_FD", "other"), 0x4C07: ("LOOP_SET_CAPACITY", "other"),
           0x4C08: ("LOOP_SET_DIRECT_IO", "other"), 0x4C09: ("LOOP_SET_BLOCK_SIZE", "other"),
           0x4C0A: ("LOOP_CONFIGURE", "other"), 0x4C80: ("LOOP_CTL_ADD", "other"),
           0x4C81: ("LOOP_CTL_REMOVE", "other"), 0x4C82: ("LOOP_CTL_GET_FREE", "query"),
           0x1260: ("BLKGETSIZE", "query"), 0x80081272: ("BLKGETSIZE64", "query"), 0x1268: ("BLKSSZGET", "query")}

DIRS = {0: "none", 1: "write", 2: "read", 3: "read/write"}


def ioc(cmd: int) -> dict:
    """The _IOC fields of a request: dir, size, type (a character where printable), nr."""
    cmd &= 0xFFFFFFFF
    t = (cmd >> 8) & 0xFF
    return {"dir": DIRS[cmd >> 30], "size": (cmd >> 16) & 0x3FFF,
            "type": chr(t) if 0x20 < t < 0x7F else f"{t:#04x}", "nr": cmd & 0xFF}


def _ioc_name(cmd: int) -> str:
    f = ioc(cmd)
    return f"_IOC({f['dir']}, '{f['type']}', {f['nr']:#04x}, {f['size']})"


# ---- which table a device's requests are read with ----
@lru_cache(maxsize=256)
def sysfs_driver(major: int, minor: int, root: str = "/sys/dev/char") -> str | None:
    """The kernel driver bound to a character device: /sys/dev/char/MAJ:MIN/device/driver."""
    try:
        return os.path.basename(os.readlink(f"{root}/{major}:{minor}/device/driver"))
    except OSError:
        return None


def family_of(major: int, proc_name: str, driver: str | None) -> str:
    """nvidia, nvidia-uvm, drm (with the driver's name), kfd or generic. /proc/devices names the
    major (NVIDIA: nvidia-frontend/nvidia at 195, nvidia-uvm dynamic); majors 226 (drm) and 261
    (accel) are shared by every DRM driver, whose name comes from sysfs."""
    n = (proc_name or "").lower()
    if n == "nvidia-uvm":
        return "nvidia-uvm"
    if major == 195 or n.startswith("nvidia"):
        return "nvidia"
    if major in (226, 261) or n in ("drm", "accel"):
        return "drm"
    if n == "kfd" or driver == "kfd":
        return "kfd"
    return "generic"


def detail_of(family: str, nr: int, arg: bytes) -> str | None:
    """What the argument's first bytes say: the class NV_ESC_RM_ALLOC creates (NVOS21/NVOS64:
    hRoot, hObjectParent, hObjectNew, hClass), the command of NV_ESC_RM_CONTROL (NVOS54: hClient,
    hObject, cmd), the inner request of NV_ESC_IOCTL_XFER_CMD (nv_ioctl_xfer_t: cmd, size, ptr)."""
    if family != "nvidia" or len(arg) < 16:
        return None
    if nr == NV_ESC_RM_ALLOC:
        cls = struct.unpack_from("<I", arg, 12)[0]
        return NV_CLASSES.get(cls, f"class {cls:#06x}")
    if nr == NV_ESC_RM_CONTROL:
        c = struct.unpack_from("<I", arg, 8)[0]
        if c in NV_CONTROLS:
            return NV_CONTROLS[c]
        iface = NV_CTRL_INTERFACES.get(c >> 16, f"{c >> 16:#06x}")
        return f"{iface}_CTRL_CMD {c & 0xFFFF:#06x}"
    if nr == NV_ESC_IOCTL_XFER_CMD:
        inner = struct.unpack_from("<I", arg, 0)[0]
        return NV_ESCAPES.get(inner & 0xFF, (f"escape {inner:#x}",))[0]
    return None


def name_request(cmd: int, family: str, driver: str | None = None, arg: bytes = b"") -> dict:
    """{name, category, detail} of one ioctl request on a device of `family`."""
    cmd &= 0xFFFFFFFF
    f = ioc(cmd)
    nr, typ = f["nr"], (cmd >> 8) & 0xFF
    hit = None
    if family == "nvidia":
        hit = NV_ESCAPES.get(nr)  # the driver reads only the nr (and the size, for copying)
    elif family == "nvidia-uvm":
        hit = UVM_IOCTLS.get(cmd)
    elif family == "drm" and typ == ord("d"):
        if 0x40 <= nr < 0xA0:
            table = DRM_DRIVERS.get(driver or "", {})
            hit = table.get(nr - 0x40) or (f"DRM_IOCTL_{(driver or 'DRIVER').upper()}_{nr - 0x40:#04x}", "other")
        else:
            hit = DRM_CORE.get(nr)
    elif family == "kfd" and typ == ord("K"):
        hit = KFD.get(nr)
    if hit is None:
        hit = GENERIC.get(cmd)
    name, cat = hit if hit else (_ioc_name(cmd), "other")
    return {"name": name, "category": cat, "detail": detail_of(family, nr, arg) if hit else None}
