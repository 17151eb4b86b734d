import Foundation
import Harness
import TestSupport
import XCTest

/// The `understudy` binary built beside this test bundle.
let understudyExecutable = Executable.beside("understudy")
let understudyBinary = understudyExecutable.path

typealias Outcome = Harness.Outcome

/// Runs `understudy ARGS…` to completion.
@discardableResult
func understudy(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> Outcome {
  try understudyExecutable.run(arguments, stdin: stdin, environment: environment)
}

func assertConforms(_ value: Any?, to schema: String, file: StaticString = #filePath, line: UInt = #line) throws {
  let value = try XCTUnwrap(value, "no JSON to check against \(schema)", file: file, line: line)
  let problems = try SchemaValidator(schemaNamed: schema).problems(value)
  XCTAssertEqual(problems, [], "\(schema): \(value)", file: file, line: line)
}
