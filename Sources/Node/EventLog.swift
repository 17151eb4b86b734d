// The node's event log, `NODE/events.jsonl`: one JSON object a line, numbered as RDF
// numbers its EMS events where RDF has one (Schemas/events.md lists every code).
// Each event is appended with one write and synced: role changes log before acting.

import AuditTrail
import Foundation

/// Event numbers. RDF's own where RDF has the event, 9xxx for Understudy's own.
public enum EventCode: Int, Sendable, CaseIterable {
  case fileRecoveryComplete = 400
  case fileError = 700
  case daemonStopped = 706
  case takeoverComplete = 724
  case safePosition = 735
  case extractorSynchronizing = 737
  case extractorSynchronized = 738
  case receiverStarted = 771
  case updaterStarted = 773
  case extractorStoppedUnexpectedly = 819
  case receiverStoppedUnexpectedly = 820
  case updaterStoppedUnexpectedly = 821
  case keptCommit = 823
  case superseded = 829
  case noFileRecoveryPosition = 858
  case fileRecoveryPosition = 888
  case daemonStarted = 9001
  case linkConnected = 9010
  case linkDropped = 9011
  case linkRefused = 9012
  case badFrame = 9013
  case initialCopyStarted = 9020
  case initialCopyComplete = 9021
  case updaterConflict = 9030
  case imageTailCut = 9031
  case batchAppliedOneByOne = 9032
  case imageFilesPurged = 9040
  case takeoverStarted = 9050
  case fileRecoveryDecided = 9051
  case followed = 9052
  case transactionSkipped = 9053
  case switchoverStarted = 9060
  case switchoverCommitted = 9061
  case switchoverComplete = 9062
  case switchoverAbandoned = 9063
}

public struct Event: Sendable {
  public var code: Int
  public var timeMicros: Int64
  public var node: String
  public var message: String
  public var fields: [(String, JSON)]

  public var json: JSON {
    .object(
      [
        ("code", .int(Int64(code))), ("time", .string(isoTime(micros: timeMicros))), ("node", .string(node)),
        ("message", .string(message)),
      ] + fields)
  }
}

public final class EventLog: Sendable {
  public let path: String
  public let node: String
  /// Also print each event to stderr (a daemon in the foreground).
  public let echo: Bool

  public init(layout: NodeLayout, node: String, echo: Bool = false) {
    self.path = layout.events
    self.node = node
    self.echo = echo
  }

  /// Appends one event. A failure to log is reported on stderr, never thrown: the
  /// event log must not stop replication.
  public func log(_ code: EventCode, _ message: String, _ fields: [(String, JSON)] = []) {
    let event = Event(code: code.rawValue, timeMicros: Clock.nowMicros(), node: node, message: message, fields: fields)
    let line = Array((event.json.serialized() + "\n").utf8)
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    if fd >= 0 {
      let written = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
      if written != line.count || fdatasync(fd) != 0 { reportFailure() }
      close(fd)
    } else {
      reportFailure()
    }
    if echo {
      FileHandle.standardError.write(Data("understudy: \(code.rawValue) \(message)\n".utf8))
    }
  }

  private func reportFailure() {
    FileHandle.standardError.write(Data("understudy: cannot append to the event log \(path): errno \(errno)\n".utf8))
  }

  /// Every event in the log; a line that does not parse is returned as text.
  public static func read(_ layout: NodeLayout, from offset: Int = 0) throws -> (lines: [String], end: Int) {
    guard let handle = Foundation.FileHandle(forReadingAtPath: layout.events) else { return ([], 0) }
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    let data = handle.readDataToEndOfFile()
    // Only whole lines: a line being appended right now is read next time.
    guard let lastNewline = data.lastIndex(of: UInt8(ascii: "\n")) else { return ([], offset) }
    let whole = data[data.startIndex...lastNewline]
    let lines = whole.split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
    return (lines, offset + whole.count)
  }
}

#if canImport(Glibc)
  import Glibc
#endif
