// scripts/torture, the fault harness (issue 12, item 15): one short round against the
// binary these tests built, its --json totals checked against Schemas/torture.schema.json
// by this package's own validator, and its checks shown not to be vacuous: a promise
// broken on purpose behind Understudy's back (--sabotage) must be found and fail the run.
// CI runs the harness itself for 30 rounds after the tests (.ci/run).

import Foundation
import TestSupport
import XCTest

final class TortureTests: XCTestCase {
  /// A round with a single fault (the primary daemon SIGKILLed and restarted).
  let roundSeed = "131510582"

  /// Runs the harness; its stderr (one line a round) goes to a file, so that neither pipe fills.
  func torture(_ arguments: [String]) throws -> Outcome {
    let log = try temporaryDirectory(self) + "/torture.stderr"
    FileManager.default.createFile(atPath: log, contents: nil)
    let errors = try XCTUnwrap(FileHandle(forWritingAtPath: log))
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", packageRoot.appendingPathComponent("scripts/torture").path] + arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = errors
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    try errors.close()
    return Outcome(
      status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
      stderr: (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
  }

  func testARoundKeepsThePromiseAndItsTotalsMatchTheSchema() throws {
    let run = try torture(["--round-seed", roundSeed, "--binary", understudyBinary, "--json"])
    XCTAssertEqual(run.status, 0, run.stderr)
    try assertConforms(run.json, to: "torture.schema.json")
    let totals = try XCTUnwrap(run.json as? [String: Any], run.stdout)
    XCTAssertEqual(totals["rounds"] as? Int, 1)
    XCTAssertGreaterThan(totals["acknowledged"] as? Int ?? 0, 0, run.stderr)
    XCTAssertEqual(totals["checked"] as? Int, totals["acknowledged"] as? Int, run.stderr)
    XCTAssertEqual((totals["faults"] as? [String: Int])?.values.reduce(0, +), 1, run.stdout)
  }

  func testEachBrokenPromiseIsFoundAndFailsTheRun() throws {
    let root = try temporaryDirectory(self)
    for (sabotage, total) in [
      ("loss", "losses"), ("double-apply", "doubleApplies"), ("phantom", "phantoms"), ("divergence", "divergences"),
    ] {
      let run = try torture([
        "--round-seed", roundSeed, "--binary", understudyBinary, "--json", "--sabotage", sabotage, "--keep", root,
      ])
      XCTAssertEqual(run.status, 1, "\(sabotage): \(run.stderr)")
      try assertConforms(run.json, to: "torture.schema.json")
      let totals = try XCTUnwrap(run.json as? [String: Any], run.stdout)
      XCTAssertGreaterThan(totals[total] as? Int ?? 0, 0, "\(sabotage) not counted in \(total): \(run.stdout)")
      XCTAssertTrue(run.stderr.contains("--round-seed \(roundSeed)"), "no replay line: \(run.stderr)")
      let failure = try XCTUnwrap((totals["failures"] as? [[String: Any]])?.first, run.stdout)
      var isDirectory: ObjCBool = false
      let kept = failure["directory"] as? String ?? ""
      XCTAssertTrue(
        FileManager.default.fileExists(atPath: kept, isDirectory: &isDirectory) && isDirectory.boolValue, kept)
    }
  }

  func testAMissingBinaryIsAHarnessErrorNotAPass() throws {
    let run = try torture(["--rounds", "1", "--seed", "1", "--binary", "/nonexistent/understudy"])
    XCTAssertEqual(run.status, 2, run.stderr)
    XCTAssertTrue(run.stderr.contains("/nonexistent/understudy"), run.stderr)
  }
}
