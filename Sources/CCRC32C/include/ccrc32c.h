// CRC-32C with the SSE4.2 instruction, for the audit trail's checksums. The portable
// table-driven version is in Swift (AuditTrail/CRC32C.swift); this is the fast path.
#ifndef UNDERSTUDY_CCRC32C_H
#define UNDERSTUDY_CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has the SSE4.2 CRC32 instruction (always 0 off x86-64).
int understudy_crc32c_hardware_available(void);

/// The CRC-32C of `count` bytes, continuing from `crc` (0 to start). Call only when
/// `understudy_crc32c_hardware_available()` says so.
uint32_t understudy_crc32c_hardware(uint32_t crc, const void *bytes, size_t count);

#endif
