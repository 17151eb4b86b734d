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
  case eventLogRepaired = 9005
  case supersedeRefused = 9070
  case matFilesPurged = 9041
  case backupDroppedFromRetention = 9042
  case primaryDatabaseBehind = 9043
  case primaryDatabaseCaughtUp = 9044
  case rtdrStarted = 9080
  case rtdrComplete = 9081
  case statemapDirty = 9082
  case statemapClean = 9083
  case followHinted = 9084
  case followHintRefused = 9085
  case writeBlockLifted = 9086
  case updaterDiverged = 9087
  case markerWritten = 9090
  case snapshotTaken = 9091
  case snapshotReleased = 9092
  case failoverRestoreDecided = 9093
  case failoverRestoreComplete = 9094
  case receivingHeld = 9095
  case updaterStopSet = 9096
  case updaterStopReached = 9097
  case updaterStopRemoved = 9098
  case updaterStopUnreadable = 9099
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
  /// Where an echoed event goes instead of stderr: the daemon's logger (swift-log), which
  /// also counts events and tells systemd when the daemon serves. Called after the append.
  public let sink: (@Sendable (Event) -> Void)?

  public init(layout: NodeLayout, node: String, echo: Bool = false, sink: (@Sendable (Event) -> Void)? = nil) {
    self.path = layout.events
    self.node = node
    self.echo = echo
    self.sink = sink
  }

  /// Appends one event. A failure to log is reported on stderr, never thrown: the
  /// event log must not stop replication.
  public func log(_ code: EventCode, _ message: String, _ fields: [(String, JSON)] = []) {
    let event = Event(code: code.rawValue, timeMicros: Clock.nowMicros(), node: node, message: message, fields: fields)
    var line = Array((event.json.serialized() + "\n").utf8)
    let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    if fd >= 0 {
      // Writers in other processes append too: the tail check and the append are one step.
      flock(fd, LOCK_EX)
      line = repairTail(fd) + line
      let written = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
      if written != line.count || fdatasync(fd) != 0 { reportFailure() }
      flock(fd, LOCK_UN)
      close(fd)
    } else {
      reportFailure()
    }
    if let sink {
      sink(event)
    } else if echo {
      FileHandle.standardError.write(Data("understudy: \(code.rawValue) \(message)\n".utf8))
    }
  }

  /// A log that does not end with a newline was cut mid-line (a crash, a full disk): the
  /// next event would glue onto the partial line and both would be lost to every reader.
  /// The partial line moves to `events.jsonl.broken-OFFSET` and the log is cut back to
  /// its last whole line; returns the 9005 line that says so (or, if the bytes cannot be
  /// kept aside, a newline that ends the partial line, leaving it as it is).
  private func repairTail(_ fd: Int32) -> [UInt8] {
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_size > 0 else { return [] }
    let size = Int(info.st_size)
    var last: UInt8 = 0
    guard pread(fd, &last, 1, off_t(size - 1)) == 1, last != UInt8(ascii: "\n") else { return [] }
    var cut = 0
    var end = size
    scan: while end > 0 {
      let start = max(0, end - 65536)
      var chunk = [UInt8](repeating: 0, count: end - start)
      guard pread(fd, &chunk, chunk.count, off_t(start)) == chunk.count else { return Array("\n".utf8) }
      if let newline = chunk.lastIndex(of: UInt8(ascii: "\n")) {
        cut = start + newline + 1
        break scan
      }
      end = start
    }
    var broken = [UInt8](repeating: 0, count: size - cut)
    let aside = "\(path).broken-\(cut)"
    guard pread(fd, &broken, broken.count, off_t(cut)) == broken.count else { return Array("\n".utf8) }
    do {
      try DurableFile.create(path: aside, contents: broken)
    } catch {
      return Array("\n".utf8)
    }
    guard ftruncate(fd, off_t(cut)) == 0 else { return Array("\n".utf8) }
    let name = (aside as NSString).lastPathComponent
    let event = Event(
      code: EventCode.eventLogRepaired.rawValue, timeMicros: Clock.nowMicros(), node: node,
      message:
        "the event log ended in a partial line (\(broken.count) bytes at offset \(cut), cut by a crash or a full disk); kept aside in \(name)",
      fields: [("bytes", .int(Int64(broken.count))), ("files", .array([.string(name)]))])
    return Array((event.json.serialized() + "\n").utf8)
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
