import AuditTrail
import Foundation
import TestSupport
import XCTest

func payload(_ i: Int, size: Int) -> [UInt8] {
  (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
}

/// Writes `sizes.count` records into a new trail and returns what was written.
@discardableResult
func writeTrail(_ dir: TrailDirectory, fileSize: Int, sizes: [Int]) throws -> [AppendedRecord] {
  let writer = try TrailWriter.create(directory: dir, nodeID: NodeID(), generation: Generation(1), fileSize: fileSize)
  var out: [AppendedRecord] = []
  for (i, size) in sizes.enumerated() {
    out += try writer.append([
      PendingRecord(
        type: .commit, txid: TransactionID(UInt64(i + 1)), commitMicros: Int64(i), payload: payload(i, size: size))
    ])
  }
  return out
}

func readBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
func writeBytes(_ bytes: [UInt8], _ path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }
