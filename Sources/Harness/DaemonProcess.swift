// A node's daemon (`understudy start --node NODE`) as a child process, for the demo and
// the benchmarks.

import AuditTrail
import Foundation
import Link
import Node

/// `understudy start --node NODE` as a child process.
final class DaemonProcess {
  let process = Process()
  let node: String

  init(node: String, log: String) throws {
    self.node = node
    if !FileManager.default.fileExists(atPath: log) { FileManager.default.createFile(atPath: log, contents: nil) }
    process.executableURL = URL(fileURLWithPath: ChildWriter.selfExecutable())
    process.arguments = ["start", "--node", node]
    let output = FileHandle(forWritingAtPath: log)
    output?.seekToEndOfFile()  // a restarted daemon adds to its log
    process.standardOutput = output
    process.standardError = output
    try process.run()
  }

  /// Waits until something accepts connections on 127.0.0.1:`port`.
  static func waitUntilListening(port: UInt16, timeout: Double = 30) throws {
    let deadline = Clock.monotonicSeconds() + timeout
    while true {
      do {
        try Socket.connect(to: HostPort(parsing: "127.0.0.1:\(port)"), timeout: 1).shutdown()
        return
      } catch {
        if Clock.monotonicSeconds() > deadline { throw error }
        usleep(50_000)
      }
    }
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
