// How every command prints: text for people, one JSON document (or JSON lines where a
// command says so) for programs, and errors as `understudy: …` on stderr with exit 1.
// In JSON mode a failure also prints `{"error":"…"}` so stdout stays valid JSON.

import ArgumentParser
import Foundation
import Node

struct NodeOption: ParsableArguments {
  @Option(name: .long, help: "The node directory.")
  var node: String
}

struct JSONFlag: ParsableArguments {
  @Flag(name: .long, help: "Print JSON instead of text.")
  var json = false
}

enum Output {
  static func line(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
  }

  static func json(_ value: JSON) { line(value.serialized()) }

  static func error(_ text: String) {
    FileHandle.standardError.write(Data((program + ": " + text + "\n").utf8))
  }

  /// What errors are prefixed with: the MIMIX command's own name when it runs (as
  /// `rtdr …` or `understudy rtdr …`), else `understudy`.
  static let program: String = {
    let arguments = CommandLine.arguments
    guard arguments.count > 1, ["rtdr", "rtstart", "rtstop", "scconfig"].contains(arguments[1]) else {
      return "understudy"
    }
    return arguments[1]
  }()

  /// Progress for people on a terminal; silent when stderr is not a terminal or in JSON mode.
  static func progress(_ text: String, json: Bool) {
    guard !json, isatty(2) != 0 else { return }
    FileHandle.standardError.write(Data(("\r\u{1B}[K" + text).utf8))
  }
}

extension ParsableCommand {
  /// Runs `body`, turning any error into a clear message and exit code 1.
  func reporting(json: Bool, _ body: () throws -> Void) throws {
    do {
      try body()
    } catch let error as ExitCode {
      throw error
    } catch let error as ValidationError {
      throw error
    } catch {
      Output.error("\(error)")
      if json { Output.json(.object([("error", .string("\(error)"))])) }
      throw ExitCode(1)
    }
  }
}
