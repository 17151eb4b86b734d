import Apply
import AuditTrail
import Foundation
import Node
import Primary
import SQLiteSupport
import TestSupport
import XCTest

/// A primary node in a fresh directory: `root/node` around `root/db.sqlite`.
struct TestNode {
  let root: String
  var node: String { root + "/node" }
  var database: String { root + "/db.sqlite" }
  var layout: NodeLayout { NodeLayout(root: node) }

  init(_ test: XCTestCase, trailFileSize: Int = 64 << 10, name: String = #function) throws {
    root = try temporaryDirectory(test, name)
    try PrimarySetup.initPrimary(.init(node: node, database: database, trailFileSize: trailFileSize))
  }

  func open() throws -> AuditedDatabase { try AuditedDatabase.open(node: node) }

  @discardableResult
  func write(_ sql: String, _ arguments: [SQLiteValue] = []) throws -> CommitInfo? {
    let db = try open()
    defer { db.close() }
    return try db.write { try $0.execute(sql, arguments) }.commit
  }

  func checksum() throws -> DatabaseChecksum {
    try DatabaseChecksum.compute(Connection(path: database, mode: .readOnly))
  }

  /// The checksum of a database rebuilt from the whole trail on an empty base.
  func replayChecksum() throws -> DatabaseChecksum {
    let path = root + "/replay-\(UUID().uuidString.prefix(6)).sqlite"
    _ = try Replay.rebuild(trail: layout.mat, into: path)
    return try DatabaseChecksum.compute(Connection(path: path, mode: .readOnly))
  }

  func rows(_ sql: String) throws -> [[SQLiteValue]] {
    try Connection(path: database, mode: .readOnly).query(sql)
  }

  func trail() throws -> TrailVerification { try TrailVerification.verify(layout.mat) }
}

func XCTAssertThrowsError<T>(
  _ expression: @autoclosure () throws -> T, containing fragments: [String], file: StaticString = #filePath,
  line: UInt = #line
) {
  XCTAssertThrowsError(try expression(), file: file, line: line) { error in
    for fragment in fragments {
      XCTAssertTrue("\(error)".contains(fragment), "'\(fragment)' not in: \(error)", file: file, line: line)
    }
  }
}
