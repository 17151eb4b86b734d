import Foundation
import XCTest

/// The `understudy` binary built beside this test bundle.
let understudyBinary: String = {
  let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
  return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("understudy").path
}()

struct Outcome {
  var status: Int32
  var stdout: String
  var stderr: String
  var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8)) }
  var jsonLines: [Any] { stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } }
}

/// Runs `understudy ARGS…` to completion.
@discardableResult
func understudy(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> Outcome {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: understudyBinary)
  process.arguments = arguments
  process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
  let out = Pipe()
  let err = Pipe()
  let input = Pipe()
  process.standardOutput = out
  process.standardError = err
  process.standardInput = input
  try process.run()
  if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
  try input.fileHandleForWriting.close()
  let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
  let stderrData = err.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return Outcome(
    status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
    stderr: String(decoding: stderrData, as: UTF8.self))
}

func temporaryDirectory(_ test: XCTestCase, _ name: String = #function) throws -> String {
  let path = NSTemporaryDirectory() + "understudy-test-\(name.filter(\.isLetter))-\(UUID().uuidString.prefix(8))"
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
  return path
}

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

func assertConforms(_ value: Any?, to schema: String, file: StaticString = #filePath, line: UInt = #line) throws {
  let value = try XCTUnwrap(value, "no JSON to check against \(schema)", file: file, line: line)
  let problems = try SchemaValidator(schemaNamed: schema).problems(value)
  XCTAssertEqual(problems, [], "\(schema): \(value)", file: file, line: line)
}
