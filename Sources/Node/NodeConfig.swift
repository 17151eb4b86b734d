// A node on disk: its directory layout and its config file (`understudy.json`).

import AuditTrail
import Foundation

public enum Role: String, Codable, Sendable, CustomStringConvertible {
  case primary, backup
  public var description: String { rawValue }
}

/// A node's certificate, its private key and the CA its peers' certificates must chain
/// to: absolute paths of PEM files.
public struct TLSFiles: Codable, Sendable, Equatable {
  public var certificate: String
  public var key: String
  public var ca: String

  public init(certificate: String, key: String, ca: String) {
    self.certificate = certificate
    self.key = key
    self.ca = ca
  }
}

/// The node's config, written by `init` and read by every command.
public struct NodeConfig: Codable, Sendable, Equatable {
  public static let currentFormat = 1

  public var format: Int
  public var nodeId: NodeID
  public var role: Role
  /// Absolute path of the protected database.
  public var database: String
  /// Where this node serves extractors (as primary), `HOST:PORT`.
  public var listen: String?
  public var generation: Generation
  /// Size of a new MAT file in bytes.
  public var trailFileSize: Int
  public var createdMicros: Int64
  /// What the database held when the node was made: the MAT replays on top of this.
  /// A backup has none until its first start copies the primary's database.
  public var base: Base?
  /// The replication setup's name; both ends of a link must agree on it.
  public var context: String?
  /// A backup's primary, `HOST:PORT`.
  public var primary: String?
  /// How long a backup keeps applied image-trail files, in seconds (default 24 h).
  public var retentionSeconds: Int?
  /// Where this node's current MAT segment starts. Takeover, file recovery and switchover
  /// each begin a fresh trail file; nothing before it is replayed or shipped again.
  /// nil: the trail's first file.
  public var matStart: MATPosition?
  /// How the current generation began on this node, when it began with a takeover or a
  /// switchover: what a follower's database must equal to stream without a full copy.
  public var generationBase: GenerationBase?
  /// Set on a primary that learned a newer generation took over (event 829); after file
  /// recovery it also holds the position recovered to. Writes are refused until `follow`.
  public var superseded: Superseded?
  /// As a primary: keep MAT files this many seconds at least, for audit, even once no
  /// backup needs them (nil: no window; files go as soon as nothing needs them).
  public var matRetentionSeconds: Int?
  /// As a primary: the most MAT one backup may hold back, in bytes; past it that backup
  /// is no longer kept for (event 9042) and needs a full copy. nil: no cap.
  public var maxRetainedBytes: Int?
  /// This server's name in its MIMIX context (`init --name`; what `rtdr -s` names). A
  /// backup tells its primary, which lists its recovery servers by it.
  public var server: String?
  /// The operator's own PKI for the link (`init --tls-cert --tls-key --tls-ca`). nil: each
  /// process makes a self-signed certificate in memory, and the peer is authenticated by
  /// the secret-bound proof alone.
  public var tls: TLSFiles?
  /// Where the daemon serves Prometheus metrics and its health endpoints, `HOST:PORT`
  /// (`start --metrics` overrides it). nil: not served.
  public var metrics: String?

  public static let defaultContext = "default"
  public static let defaultRetentionSeconds = 24 * 3600

  public var contextName: String { context ?? Self.defaultContext }
  public var retention: Int { retentionSeconds ?? Self.defaultRetentionSeconds }

  public struct Base: Codable, Sendable, Equatable {
    public var position: MATPosition
    public var checksum: String
    public var empty: Bool

    public init(position: MATPosition, checksum: String, empty: Bool) {
      self.position = position
      self.checksum = checksum
      self.empty = empty
    }
  }

  /// The database a new generation starts from: the previous primary's position and
  /// transaction id it had reached, and the logical checksum there.
  public struct GenerationBase: Codable, Sendable, Equatable {
    public var generation: Generation
    public var matStart: MATPosition
    public var priorNode: NodeID
    public var priorTxid: TransactionID
    public var priorEnd: MATPosition
    public var checksum: String
    /// When the generation began with a takeover: its 888 position (the old primary's
    /// file-recovery position), or nil and the 858 reason. Not sent in a base answer.
    public var fileRecovery: MATPosition?
    public var noFileRecovery: String?

    public init(
      generation: Generation, matStart: MATPosition, priorNode: NodeID, priorTxid: TransactionID,
      priorEnd: MATPosition, checksum: String, fileRecovery: MATPosition? = nil, noFileRecovery: String? = nil
    ) {
      self.generation = generation
      self.matStart = matStart
      self.priorNode = priorNode
      self.priorTxid = priorTxid
      self.priorEnd = priorEnd
      self.checksum = checksum
      self.fileRecovery = fileRecovery
      self.noFileRecovery = noFileRecovery
    }
  }

  public struct Superseded: Codable, Sendable, Equatable {
    /// The newer generation and where its primary was found, when known.
    public var generation: Generation?
    public var by: NodeID?
    public var address: String?
    public var learnedMicros: Int64
    /// Set by file recovery: this node's database holds exactly the MAT before it.
    public var recoveredTo: MATPosition?
    /// The transaction id of the last commit before `recoveredTo`.
    public var recoveredTxid: TransactionID?

    public init(
      generation: Generation?, by: NodeID?, address: String?, learnedMicros: Int64,
      recoveredTo: MATPosition? = nil, recoveredTxid: TransactionID? = nil
    ) {
      self.generation = generation
      self.by = by
      self.address = address
      self.learnedMicros = learnedMicros
      self.recoveredTo = recoveredTo
      self.recoveredTxid = recoveredTxid
    }
  }

  public init(
    format: Int, nodeId: NodeID, role: Role, database: String, listen: String?, generation: Generation,
    trailFileSize: Int, createdMicros: Int64, base: Base?, context: String? = nil, primary: String? = nil,
    retentionSeconds: Int? = nil
  ) {
    self.format = format
    self.nodeId = nodeId
    self.role = role
    self.database = database
    self.listen = listen
    self.generation = generation
    self.trailFileSize = trailFileSize
    self.createdMicros = createdMicros
    self.base = base
    self.context = context
    self.primary = primary
    self.retentionSeconds = retentionSeconds
  }
}

public enum NodeError: Error, CustomStringConvertible {
  case notANode(String)
  case alreadyANode(String)
  case badConfig(path: String, reason: String)
  case wrongRole(node: String, role: Role, needed: Role, command: String)
  case databaseMissing(node: String, database: String)

  public var description: String {
    switch self {
    case .notANode(let path):
      "\(path) is not an Understudy node (no understudy.json); create one with `understudy init`"
    case .alreadyANode(let path):
      "\(path) already holds an Understudy node; refusing to overwrite it (choose another directory)"
    case .badConfig(let path, let reason):
      "node config \(path) is unreadable: \(reason)"
    case .wrongRole(let node, let role, let needed, let command):
      "\(command) needs a \(needed) node, but \(node) is a \(role)"
    case .databaseMissing(let node, let database):
      "the database of node \(node) is missing: \(database)"
    }
  }
}

/// Paths inside a node directory.
public struct NodeLayout: Sendable {
  public let root: String

  public init(root: String) {
    self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
  }

  public var config: String { root + "/understudy.json" }
  public var mat: TrailDirectory { TrailDirectory(path: root + "/mat") }
  public var state: String { root + "/state" }
  public var events: String { root + "/events.jsonl" }
  public var secretKey: String { root + "/secret.key" }
  /// A backup's copy of its primary's MAT.
  public var image: TrailDirectory { TrailDirectory(path: root + "/image") }
  /// A relaying backup's next hops and what of its image trail they still need.
  public var relayed: String { state + "/relayed.json" }
  /// MAT records undone by file recovery, moved out of the MAT: `fenced/SNO-RBA/`.
  public var fenced: String { root + "/fenced" }

  public func loadConfig() throws -> NodeConfig {
    guard FileManager.default.fileExists(atPath: config) else { throw NodeError.notANode(root) }
    do {
      let data = try Data(contentsOf: URL(fileURLWithPath: config))
      let decoded = try JSONDecoder().decode(NodeConfig.self, from: data)
      guard decoded.format == NodeConfig.currentFormat else {
        throw NodeError.badConfig(
          path: config, reason: "format \(decoded.format); this build reads format \(NodeConfig.currentFormat)")
      }
      return decoded
    } catch let error as NodeError {
      throw error
    } catch {
      throw NodeError.badConfig(path: config, reason: "\(error)")
    }
  }

  public func saveConfig(_ config: NodeConfig) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let data = try encoder.encode(config) + Data("\n".utf8)
    try DurableFile.create(path: self.config, contents: Array(data))
  }
}
