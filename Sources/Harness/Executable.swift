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

  /// Runs `ARGS…` to completion, `stdin` fed to it. A run still going after `deadline`
  /// seconds is SIGKILLed and says so in its stderr (and on this process's stdout): a
  /// command that hangs fails the test that ran it, by name, instead of stalling the
  /// whole suite until CI's limit.
  @discardableResult
  public func run(
    _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:],
    deadline: Double = Executable.commandDeadline
  ) throws -> Outcome {
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
    return Outcome(
      collecting: process, stdout: out, stderr: err, fed: fed, deadline: deadline,
      naming: ([path] + arguments).joined(separator: " "))
  }

  /// How long a command run to completion may take (UNDERSTUDY_COMMAND_DEADLINE seconds,
  /// default 300): far more than any test's command needs, far less than CI's limit.
  public static let commandDeadline: Double =
    ProcessInfo.processInfo.environment["UNDERSTUDY_COMMAND_DEADLINE"].flatMap(Double.init) ?? 300

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

  /// Reads both pipes at once (a child filling one while this reads the other must not
  /// deadlock) until the process exits, SIGKILLing it after `deadline` seconds. Output
  /// still open a few seconds after the exit (held by a grandchild) is not waited for.
  public init(
    collecting process: Process, stdout: Pipe, stderr: Pipe, fed: DispatchSemaphore,
    deadline: Double = Executable.commandDeadline, naming name: String = "the command"
  ) {
    let stdoutData = PipeDrain(stdout)
    let stderrData = PipeDrain(stderr)
    var killed = false
    if !waitForExit(process, seconds: deadline) {
      killed = true
      print("HUNG: \(name) still running after \(Int(deadline)) s; SIGKILLed")
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
    _ = fed.wait(timeout: .now() + 5)
    var errors = String(decoding: stderrData.take(within: 5), as: UTF8.self)
    if killed { errors += "\nHUNG: still running after \(Int(deadline)) s; SIGKILLed by the test harness\n" }
    self.init(
      status: killed ? 128 + SIGKILL : process.terminationStatus,
      stdout: String(decoding: stdoutData.take(within: 5), as: UTF8.self), stderr: errors)
  }
}

/// Waits up to `seconds` for `process` to exit; false if it is still running.
public func waitForExit(_ process: Process, seconds: Double) -> Bool {
  let deadline = Date().addingTimeInterval(seconds)
  while process.isRunning {
    if Date() >= deadline { return false }
    usleep(1000)
  }
  process.waitUntilExit()
  return true
}

/// One pipe read to its end on its own thread.
private final class PipeDrain: @unchecked Sendable {
  // Safe: `data` is only touched under `lock`; a take after a timeout copies what the
  // reading thread has appended so far.
  private let lock = NSLock()
  private var data = Data()
  private let done = DispatchSemaphore(value: 0)

  init(_ pipe: Pipe) {
    let handle = pipe.fileHandleForReading
    Thread { [self] in
      while case let chunk = handle.availableData, !chunk.isEmpty { lock.withLock { data.append(chunk) } }
      done.signal()
    }.start()
  }

  /// What was read, waiting up to `seconds` for the end (what came so far, if it did not).
  func take(within seconds: Double) -> Data {
    _ = done.wait(timeout: .now() + seconds)
    return lock.withLock { data }
  }
}
