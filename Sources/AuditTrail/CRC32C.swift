// CRC-32C (Castagnoli), the checksum of every trail header, record and link frame.
// The CPU's CRC32 instruction where there is one (x86-64 with SSE4.2); slicing-by-8 in
// software elsewhere. Every record is checksummed by the writer, the extractor, the
// receiver and the updater, and in software that was a tenth of the daemons' time.

import CCRC32C

public enum CRC32C {
  /// Whether `checksum` uses the CPU's instruction.
  public static let usesHardware = understudy_crc32c_hardware_available() != 0

  private static let tables: [[UInt32]] = {
    var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
    for i in 0..<256 {
      var crc = UInt32(i)
      for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
      tables[0][i] = crc
    }
    for i in 0..<256 {
      for t in 1..<8 {
        let prev = tables[t - 1][i]
        tables[t][i] = (prev >> 8) ^ tables[0][Int(prev & 0xFF)]
      }
    }
    return tables
  }()

  /// The CRC of `bytes`, continuing from `crc` (pass the result of a previous call to extend it).
  public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
    guard usesHardware, let base = bytes.baseAddress else { return softwareChecksum(bytes, continuing: crc) }
    return understudy_crc32c_hardware(crc, base, bytes.count)
  }

  /// The same in software, whatever the CPU has (the hardware path is tested against it).
  public static func softwareChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
    var c = ~crc
    var i = 0
    let n = bytes.count
    tables.withUnsafeBufferPointer { t in
      let t0 = t[0]
      let t1 = t[1]
      let t2 = t[2]
      let t3 = t[3]
      let t4 = t[4]
      let t5 = t[5]
      let t6 = t[6]
      let t7 = t[7]
      while n - i >= 8 {
        let lo = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
        let x = c ^ lo
        c =
          t7[Int(x & 0xFF)] ^ t6[Int((x >> 8) & 0xFF)] ^ t5[Int((x >> 16) & 0xFF)] ^ t4[Int(x >> 24)]
          ^ t3[Int(bytes[i + 4])] ^ t2[Int(bytes[i + 5])] ^ t1[Int(bytes[i + 6])] ^ t0[Int(bytes[i + 7])]
        i += 8
      }
      while i < n {
        c = (c >> 8) ^ t0[Int((c ^ UInt32(bytes[i])) & 0xFF)]
        i += 1
      }
    }
    return ~c
  }

  public static func checksum(_ bytes: some Collection<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
    if let r = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0), continuing: crc) }) {
      return r
    }
    return Array(bytes).withUnsafeBytes { checksum($0, continuing: crc) }
  }
}
