// A writer in another process: `understudy sql --each-line --json`, fed over a pipe,
// its acknowledgements read back. The demo kills it with SIGKILL.

import Foundation

public final class ChildWriter {
  public struct Ack {
    public var line: Int
    public var txid: Int64
  }

  private let process: Process
  private let input = Pipe()
  private let output = Pipe()
  private var buffer = Data()
  private var acks: [Ack] = []

  /// `failpoint`: the child's UNDERSTUDY_FAILPOINT (none if nil, whatever this process has).
  public init(executable: Executable, node: String, failpoint: String? = nil) throws {
    process = executable.process(["sql", "--node", node, "--each-line", "--json"])
    process.environment?["UNDERSTUDY_FAILPOINT"] = failpoint
    process.standardInput = input
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let fd = output.fileHandleForReading.fileDescriptor
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    signal(SIGPIPE, SIG_IGN)
  }

  public var exited: Bool { !process.isRunning }

  /// Sends a line; false once the child is gone.
  @discardableResult
  public func send(_ line: String) -> Bool {
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
  public func pollAck() -> Ack? {
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
  public func kill() {
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
  public func drainAcks() -> [Ack] {
    defer { acks.removeAll() }
    return acks
  }
}
