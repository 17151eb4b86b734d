import Foundation
import TestSupport
import XCTest

@testable import AuditTrail

final class TrailFormatTests: XCTestCase {
  func testTheCPUsCRC32CAgreesWithTheSoftwareOne() {
    #if arch(x86_64)
      if let cpu = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8), cpu.contains(" sse4_2") {
        XCTAssertTrue(CRC32C.usesHardware, "this CPU has SSE4.2, but the checksum does not use it")
      }
    #endif
    var rng = SeededGenerator(seed: 7)
    let bytes = (0..<1100).map { _ in UInt8.random(in: 0...255, using: &rng) }
    bytes.withUnsafeBytes { all in
      XCTAssertEqual(CRC32C.softwareChecksum(UnsafeRawBufferPointer(rebasing: all[0..<9])), CRC32C.checksum(all[0..<9]))
      // Every length up to 64 and a few longer ones, at every alignment, continuing a CRC.
      for start in 0..<8 {
        for count in Array(0...64) + [100, 255, 1000] {
          let slice = UnsafeRawBufferPointer(rebasing: all[start..<(start + count)])
          XCTAssertEqual(
            CRC32C.checksum(slice, continuing: 0x1234_5678), CRC32C.softwareChecksum(slice, continuing: 0x1234_5678),
            "\(count) bytes at offset \(start)")
        }
      }
    }
    XCTAssertEqual(
      Array("123456789".utf8).withUnsafeBytes { CRC32C.softwareChecksum($0) }, 0xE306_9283)
  }

  func testCRC32CMatchesTheStandardCheckValue() {
    XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
    // Continuing a CRC equals computing it in one go.
    let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
    XCTAssertEqual(
      CRC32C.checksum(bytes[500...], continuing: CRC32C.checksum(bytes[..<500])), CRC32C.checksum(bytes))
  }

  func testRecordRoundTripsAndIsAligned() throws {
    for size in [0, 1, 7, 8, 9, 100, 4096] {
      let record = Record(
        type: .commit, txid: TransactionID(42), commitMicros: -5, payload: payload(size, size: size),
        prevCRC: 0xDEAD_BEEF)
      let bytes = record.encoded()
      XCTAssertEqual(bytes.count % 8, 0)
      XCTAssertEqual(bytes.count, 32 + (size + 7) / 8 * 8)
      let (decoded, crc) = try Record.decode(bytes).get()
      XCTAssertEqual(decoded, record)
      XCTAssertEqual(crc, bytes.readLE(UInt32.self, at: 4))
    }
  }

  func testNodeIDTextIsTheLowercaseUUIDAndParsesBack() {
    for _ in 0..<100 {
      let id = NodeID()
      XCTAssertEqual(id.description, id.uuid.uuidString.lowercased())
      XCTAssertEqual(NodeID(id.description), id)
    }
  }

  func testFileHeaderRoundTripsAndNamesEachProblem() throws {
    let header = FileHeader(sno: 7, nodeID: NodeID(), generation: Generation(3), createdMicros: 123, chainSeed: 99)
    var bytes = header.encoded()
    XCTAssertEqual(bytes.count, 64)
    XCTAssertEqual(try FileHeader.decode(bytes).get(), header)
    XCTAssertEqual(bytes[8], 3, "this build writes version 3")
    bytes[8] = 4  // a version after this build's
    guard case .failure(.unsupportedVersion(4)) = FileHeader.decode(bytes) else {
      return XCTFail("version not refused")
    }
    bytes[8] = 0
    guard case .failure(.unsupportedVersion(0)) = FileHeader.decode(bytes) else {
      return XCTFail("version 0 not refused")
    }
    bytes = header.encoded()
    bytes[0] = UInt8(ascii: "X")
    guard case .failure(.badMagic) = FileHeader.decode(bytes) else { return XCTFail("magic not refused") }
    bytes = header.encoded()
    bytes[40] ^= 1
    guard case .failure(.checksum) = FileHeader.decode(bytes) else { return XCTFail("checksum not checked") }
  }

  func testPayloadRoundTripsAndRejectsMalformedBytes() throws {
    let items: [CommitItem] = [
      .ddl("CREATE TABLE t(id INTEGER PRIMARY KEY, v)"),
      .changes(changeset: [1, 2, 3], tables: [TableColumns(table: "t", columns: ["id", "v"])]),
      .ddl("ALTER TABLE t ADD COLUMN w"),
    ]
    let bytes = CommitPayload.encode(items)
    XCTAssertEqual(try CommitPayload.decode(bytes), items)
    // Cut anywhere, it either fails or (cut exactly between items) is a shorter list;
    // the record's CRC is what catches the latter.
    let boundaries = (1...items.count).map { CommitPayload.encode(Array(items[0..<$0])).count }
    for cut in 1..<bytes.count {
      if let k = boundaries.firstIndex(of: cut) {
        XCTAssertEqual(try CommitPayload.decode(Array(bytes[0..<cut])), Array(items[0...k]))
      } else {
        XCTAssertThrowsError(try CommitPayload.decode(Array(bytes[0..<cut])), "cut at \(cut)")
      }
    }
    var unknown = bytes
    unknown[0] = 9
    XCTAssertThrowsError(try CommitPayload.decode(unknown)) { XCTAssertTrue("\($0)".contains("unknown item kind 9")) }
  }
}
