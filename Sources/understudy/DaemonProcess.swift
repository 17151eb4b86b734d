// A node's daemon (`understudy start --node NODE`) as a child process, for the demo and
// the benchmarks.

import Foundation

/// `understudy start --node NODE` as a child process.
final class DaemonProcess {
  let process = Process()
  let node: String

  init(node: String, log: String) throws {
    self.node = node
    FileManager.default.createFile(atPath: log, contents: nil)
    process.executableURL = URL(fileURLWithPath: ChildWriter.selfExecutable())
    process.arguments = ["start", "--node", node]
    process.standardOutput = FileHandle(forWritingAtPath: log)
    process.standardError = FileHandle(forWritingAtPath: log)
    try process.run()
  }

  /// SIGKILL, as a crash would.
  func kill() {
    Foundation.kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
  }

  func stop() {
    guard process.isRunning else { return }
    Foundation.kill(process.processIdentifier, SIGTERM)
    process.waitUntilExit()
  }
}
