// A writer in another process: `understudy sql --each-line --json`, fed over a pipe,
// its acknowledgements read back. The demo kills it with SIGKILL.

import Foundation

final class ChildWriter {
  struct Ack {
    var line: Int
    var txid: Int64
  }

  private let process = Process()
  private let input = Pipe()
  private let output = Pipe()
  private var buffer = Data()
  private var acks: [Ack] = []

  static func selfExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
  }

  init(executable: String, node: String, failpoint: String? = nil) throws {
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = ["sql", "--node", node, "--each-line", "--json"]
    var environment = ProcessInfo.processInfo.environment
    environment["UNDERSTUDY_FAILPOINT"] = failpoint
    process.environment = environment
    process.standardInput = input
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let fd = output.fileHandleForReading.fileDescriptor
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    signal(SIGPIPE, SIG_IGN)
  }

  var exited: Bool { !process.isRunning }

  /// Sends a line; false once the child is gone.
  @discardableResult
  func send(_ line: String) -> Bool {
    let data = Array((line + "\n").utf8)
    var done = 0
    while done < data.count {
      let n = data[done...].withUnsafeBytes {
        write(input.fileHandleForWriting.fileDescriptor, $0.baseAddress, $0.count)
      }
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else { return false }
      done += n
    }
    return true
  }

  /// The next acknowledgement printed so far, if any.
  func pollAck() -> Ack? {
    if acks.isEmpty { readAvailable() }
    return acks.isEmpty ? nil : acks.removeFirst()
  }

  private func readAvailable() {
    var chunk = [UInt8](repeating: 0, count: 65536)
    let n = read(output.fileHandleForReading.fileDescriptor, &chunk, chunk.count)
    guard n > 0 else {
      if n < 0 && errno == EAGAIN { usleep(1000) }
      return
    }
    buffer.append(contentsOf: chunk[0..<n])
    while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
      let line = buffer[buffer.startIndex..<newline]
      buffer = Data(buffer[(newline + 1)...])
      if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
        let number = object["line"] as? Int, let txid = object["txid"] as? Int
      {
        acks.append(Ack(line: number, txid: Int64(txid)))
      }
    }
  }

  /// Kills the child (if it has not died by itself) and collects the acks it printed.
  func kill() {
    Foundation.kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    let fd = output.fileHandleForReading.fileDescriptor
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
    var before = -1
    while acks.count != before {
      before = acks.count
      readAvailable()
    }
  }

  /// Every ack not yet taken.
  func drainAcks() -> [Ack] {
    defer { acks.removeAll() }
    return acks
  }
}
