// The daemon's diagnostic lines through swift-log: on a terminal (or by default) the
// same text as before, `understudy: CODE message`; with `--log-format json` one JSON object
// a line. Only what an event's message says goes out: events carry no secret, key or row
// value, and neither do these lines. `events.jsonl` stays the durable record.

import Foundation
import Logging
import Node

/// Writes one line to stderr per message, in one write so lines from threads do not mix.
private func writeStderr(_ line: String) {
  FileHandle.standardError.write(Data(line.utf8))
}

public struct TextLogHandler: LogHandler {
  public var logLevel: Logger.Level = .info
  public var metadata: Logger.Metadata = [:]
  public init() {}

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    let code = event.metadata?["code"].map { "\($0) " } ?? ""
    writeStderr("understudy: \(code)\(event.message)\n")
  }
}

public struct JSONLinesLogHandler: LogHandler {
  public var logLevel: Logger.Level = .info
  public var metadata: Logger.Metadata = [:]
  private let label: String
  public init(label: String) { self.label = label }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var fields: [(String, JSON)] = [
      ("time", .string(isoTime(micros: Int64(Date().timeIntervalSince1970 * 1e6)))),
      ("level", .string(event.level.rawValue)), ("logger", .string(label)), ("message", .string("\(event.message)")),
    ]
    let all = metadata.merging(event.metadata ?? [:]) { $1 }
    for key in all.keys.sorted() {
      let value = "\(all[key]!)"
      fields.append((key, Int64(value).map(JSON.int) ?? .string(value)))
    }
    writeStderr(JSON.object(fields).serialized() + "\n")
  }
}

public enum LogFormat: String, CaseIterable, Sendable {
  case text, json

  /// Sets swift-log's handler for the process (once).
  public func bootstrap() {
    switch self {
    case .text: LoggingSystem.bootstrap { _ in TextLogHandler() }
    case .json: LoggingSystem.bootstrap { JSONLinesLogHandler(label: $0) }
    }
  }
}

/// An event as a log line: info, or warning for the codes that report trouble.
public func logEvent(_ logger: Logger, _ event: Event) {
  let trouble: Set<Int> = [700, 819, 820, 821, 829, 9011, 9012, 9013, 9030, 9087, 9099]
  logger.log(
    level: trouble.contains(event.code) ? .warning : .info, "\(event.message)",
    metadata: ["code": "\(event.code)", "node": "\(event.node)"])
}
