// The event log cut mid-line by a crash, with real truncated bytes: the next event must
// not glue onto the partial line (and both be lost to every reader); the partial line is
// kept aside and the repair logged (9005).

import Foundation
import TestSupport
import XCTest

final class EventLogTests: XCTestCase {
  func testAnEventLogCutMidLineIsRepairedNotGluedOnto() throws {
    let root = try temporaryDirectory(self)
    let node = root + "/p"
    let created = try understudy([
      "init", "primary", "--node", node, "--db", root + "/p.db", "--listen", "127.0.0.1:\(freePort())",
    ])
    XCTAssertEqual(created.status, 0, created.stderr)
    let log = node + "/events.jsonl"
    let first = try Daemon(node: node)
    try first.stop()
    let whole = try Data(contentsOf: URL(fileURLWithPath: log))
    XCTAssertEqual(whole.last, UInt8(ascii: "\n"))
    // A crash in the middle of an append: half an event, no newline.
    let partial = Data(#"{"code":706,"time":"2026-01-01T00:00:00.000000Z","node":"x","mess"#.utf8)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
    try handle.seekToEnd()
    try handle.write(contentsOf: partial)
    try handle.close()

    let second = try Daemon(node: node)
    try second.stop()
    let printed = try understudy(["events", "--node", node, "--json"])
    XCTAssertEqual(printed.status, 0, printed.stderr)
    let lines = printed.stdout.split(separator: "\n")
    let parsed = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    XCTAssertEqual(parsed.count, lines.count, "lines that are not JSON: \(printed.stdout)")
    let codes = parsed.compactMap { $0["code"] as? Int }
    XCTAssertEqual(codes.filter { $0 == 9001 }.count, 2, "the event after the cut was lost: \(codes)")
    let repaired = try XCTUnwrap(parsed.first { $0["code"] as? Int == 9005 }, "no 9005: \(codes)")
    let aside = log + ".broken-\(whole.count)"
    XCTAssertEqual((repaired["files"] as? [String])?.first, (aside as NSString).lastPathComponent)
    XCTAssertEqual(repaired["bytes"] as? Int, partial.count)
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: aside)), partial, "the broken bytes were not kept aside")
    for line in parsed { try assertConforms(line, to: "event.schema.json") }
  }
}
