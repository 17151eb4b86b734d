// The primary's record of a planned switchover, `state/switchover.json`, shared by the
// `switchover` command (which writes each decision) and the daemon's extractor (which,
// once the switchover is committed and the backup has applied its record, tells the
// backup to become the primary).

import AuditTrail
import Foundation
import Node

public struct SwitchoverJournal: Codable, Sendable, Equatable {
  public enum Phase: String, Codable, Sendable {
    /// Writes are blocked; the switchover record may not be written yet.
    case started
    /// The record is in the MAT; waiting for the backup to apply it.
    case waiting
    /// The backup applied it in time: no way back. The extractor sends `promote`.
    case committed
    /// The backup is the primary now; this node still has to follow it.
    case promoted
    case complete
    case abandoned
  }

  public var phase: Phase
  /// The generation that begins, and the backup that becomes its primary.
  public var generation: Generation
  public var target: NodeID
  public var targetListen: String
  public var record: MATPosition?
  public var end: MATPosition?
  public var txid: TransactionID?
  public var startedMicros: Int64

  public init(generation: Generation, target: NodeID, targetListen: String) {
    self.phase = .started
    self.generation = generation
    self.target = target
    self.targetListen = targetListen
    self.startedMicros = Clock.nowMicros()
  }

  public var isOpen: Bool { phase != .complete && phase != .abandoned }

  public static func path(_ layout: NodeLayout) -> String { layout.state + "/switchover.json" }

  /// No file: no switchover was ever started on this node.
  public static func read(_ layout: NodeLayout) throws -> SwitchoverJournal? {
    try StateFile.read(SwitchoverJournal.self, at: path(layout))
  }

  public func save(_ layout: NodeLayout) throws { try StateFile.write(self, to: Self.path(layout)) }
}
