import Foundation
import TestSupport
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
  var jsonLines: [Any] {
    stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) }
  }
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
  // Fed from another thread: a child that prints as it reads must not block on a full stdout.
  let writing = input.fileHandleForWriting
  let fed = DispatchSemaphore(value: 0)
  Thread {
    signal(SIGPIPE, SIG_IGN)
    if let stdin { try? writing.write(contentsOf: Data(stdin.utf8)) }
    try? writing.close()
    fed.signal()
  }.start()
  return Outcome(collecting: process, stdout: out, stderr: err, fed: fed)
}

extension Outcome {
  /// Reads both pipes to their end, then waits for the process and for its feeder.
  init(collecting process: Process, stdout: Pipe, stderr: Pipe, fed: DispatchSemaphore) {
    let stdoutData = stdout.fileHandleForReading.readDataToEndOfFile()
    let stderrData = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    fed.wait()
    self.init(
      status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
      stderr: String(decoding: stderrData, as: UTF8.self))
  }
}

func assertConforms(_ value: Any?, to schema: String, file: StaticString = #filePath, line: UInt = #line) throws {
  let value = try XCTUnwrap(value, "no JSON to check against \(schema)", file: file, line: line)
  let problems = try SchemaValidator(schemaNamed: schema).problems(value)
  XCTAssertEqual(problems, [], "\(schema): \(value)", file: file, line: line)
}
