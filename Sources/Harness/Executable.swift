// The `understudy` binary run as a child process: to completion with its output
// collected (`run`), or in the background (`start`). Which binary is a parameter: the
// command line runs itself, the tests run the one built beside their bundle.

import Foundation

public struct Executable: Sendable {
  public let path: String

  public init(path: String) { self.path = path }

  /// This process's own executable: the command line running itself.
  public static var current: Executable { Executable(path: runningPath()) }

  /// The binary `name` in the directory of this process's executable (the tests run the
  /// `understudy` built beside their bundle).
  public static func beside(_ name: String) -> Executable {
    Executable(path: URL(fileURLWithPath: runningPath()).deletingLastPathComponent().appendingPathComponent(name).path)
  }

  private static func runningPath() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
  }

  /// A process for this binary with `arguments`, its environment this process's with
  /// `environment` laid over it; not started.
  public func process(_ arguments: [String], environment: [String: String] = [:]) -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    return process
  }

  /// Runs `ARGS…` to completion, `stdin` fed to it.
  @discardableResult
  public func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> Outcome {
    let process = process(arguments, environment: environment)
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

  /// `ARGS…` started in the background with its output discarded: a procedure to SIGKILL
  /// mid-run.
  public func start(_ arguments: [String]) throws -> Process {
    let process = process(arguments)
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
  }
}

/// What a finished child printed, and how it exited.
public struct Outcome {
  public var status: Int32
  public var stdout: String
  public var stderr: String
  public var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8)) }
  public var jsonLines: [Any] {
    stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) }
  }

  public init(status: Int32, stdout: String, stderr: String) {
    self.status = status
    self.stdout = stdout
    self.stderr = stderr
  }

  /// Reads both pipes to their end, then waits for the process and for its feeder.
  public init(collecting process: Process, stdout: Pipe, stderr: Pipe, fed: DispatchSemaphore) {
    let stdoutData = stdout.fileHandleForReading.readDataToEndOfFile()
    let stderrData = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    fed.wait()
    self.init(
      status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
      stderr: String(decoding: stderrData, as: UTF8.self))
  }
}
