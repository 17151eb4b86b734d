import AuditTrail
import Foundation
import XCTest

/// A fresh directory under the system temp dir, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase, _ name: String = #function) throws -> String {
  let path = NSTemporaryDirectory() + "understudy-test-\(name.filter(\.isLetter))-\(UUID().uuidString.prefix(8))"
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
  return path
}

/// SplitMix64, seeded; tests print their seed so a failure can be replayed.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

func testSeed(_ name: String) -> UInt64 {
  let seed = ProcessInfo.processInfo.environment["UNDERSTUDY_TEST_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...999_999)
  print("\(name): seed \(seed) (set UNDERSTUDY_TEST_SEED=\(seed) to repeat)")
  return seed
}

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
      PendingRecord(type: .commit, txid: TransactionID(UInt64(i + 1)), commitMicros: Int64(i), payload: payload(i, size: size))
    ])
  }
  return out
}

func readBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
func writeBytes(_ bytes: [UInt8], _ path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }
