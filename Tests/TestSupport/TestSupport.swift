// Helpers shared by every test target.

import Foundation
import TestSupport
import XCTest

@_exported import struct Node.SeededGenerator

/// A fresh directory under the system temp dir, removed when the test ends.
public func temporaryDirectory(_ test: XCTestCase, _ name: String = #function) throws -> String {
  let path = NSTemporaryDirectory() + "understudy-test-\(name.filter(\.isLetter))-\(UUID().uuidString.prefix(8))"
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  // UNDERSTUDY_KEEP_TEST_FILES=1 keeps them, to read a failed test's nodes afterwards.
  if ProcessInfo.processInfo.environment["UNDERSTUDY_KEEP_TEST_FILES"] == nil {
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
  } else {
    print("keeping \(path)")
  }
  return path
}

/// The seed for a randomized test: UNDERSTUDY_TEST_SEED if set, else a new one. Printed,
/// so a failure can be replayed.
public func testSeed(_ name: String) -> UInt64 {
  let seed =
    ProcessInfo.processInfo.environment["UNDERSTUDY_TEST_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...999_999)
  print("\(name): seed \(seed) (set UNDERSTUDY_TEST_SEED=\(seed) to repeat)")
  return seed
}

/// The package's root directory (for Schemas/ and Fixtures/).
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()
