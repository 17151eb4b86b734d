import Apply
import AuditTrail
import Foundation
import Node
import Primary
import SQLiteSupport
import TestSupport
import XCTest

/// A trail written by format version 1 must read, decode and replay the same forever.
final class FixtureTests: XCTestCase {
  let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/trail-v1")

  func testVersion1TrailDecodesAsRecorded() throws {
    let v = try TrailVerification.verify(TrailDirectory(path: fixture.path))
    XCTAssertNil(v.tornTail)
    XCTAssertNil(v.garbageAfterEnd)
    XCTAssertEqual(v.records.count, 34)
    let dump = JSON.object([
      ("records", .array(try v.records.map { try DecodedTransaction($0).json })), ("end", v.end.json),
      ("tornTail", .null),
    ])
    let actual = try JSONSerialization.jsonObject(with: Data(dump.serialized().utf8)) as! NSDictionary
    let expected =
      try JSONSerialization.jsonObject(with: Data(contentsOf: fixture.appendingPathComponent("expected-dump.json")))
      as! NSDictionary
    XCTAssertTrue(actual.isEqual(expected), "decoded v1 trail differs from Fixtures/trail-v1/expected-dump.json")
  }

  func testVersion1TrailReplaysToTheRecordedChecksum() throws {
    let root = try temporaryDirectory(self)
    let trail = TrailDirectory(path: root + "/mat")
    try FileManager.default.copyItem(atPath: fixture.path, toPath: trail.path)
    _ = try Replay.rebuild(trail: trail, into: root + "/replayed.sqlite")
    let replayed = try Connection(path: root + "/replayed.sqlite", mode: .readOnly)
    let sum = try DatabaseChecksum.compute(replayed)
    // The checksum's construction of Schemas/checksum.md (expected-checksum.json holds the
    // value of the first construction, an ordered SHA-256, kept as history).
    let expected = try JSONDecoder().decode(
      DatabaseChecksum.self, from: Data(contentsOf: fixture.appendingPathComponent("expected-checksum-2.json")))
    XCTAssertEqual(sum, expected)
    // Kept transaction by transaction as the v1 records replayed, equal to the full scan.
    XCTAssertEqual(try IncrementalChecksum.read(replayed), sum)
  }
}
