// A server's home (`UNDERSTUDY_HOME`, default /var/lib/understudy): the MIMIX contexts
// this server takes part in, one config file each (`contexts/ID.json`), and per context
// the state of its disaster-recovery cycle (`contexts/ID.state.json`). A context names
// the node directory that does the work; everything below the node stays the engine's.

import AuditTrail
import Foundation
import Node

/// A context's number (`-C`, `-F`): a positive integer.
public struct ContextID: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
  public let rawValue: Int

  public init(_ rawValue: Int) { self.rawValue = rawValue }

  public init(parsing text: String) throws {
    guard let value = Int(text), value > 0, String(value) == text else {
      throw MIMIXError.badContextID(text)
    }
    rawValue = value
  }

  /// A node's `--context` that is a context ID, or nil for a plain context name.
  public static func from(contextName: String?) -> ContextID? {
    contextName.flatMap { try? ContextID(parsing: $0) }
  }

  public static func < (a: ContextID, b: ContextID) -> Bool { a.rawValue < b.rawValue }
  public var description: String { String(rawValue) }

  public init(from decoder: Decoder) throws { rawValue = try decoder.singleValueContainer().decode(Int.self) }
  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(rawValue)
  }
}

/// A server's part in a context: the production server, or a recovery server.
public enum ContextRole: String, Codable, Sendable, CustomStringConvertible {
  case production, recovery
  public var description: String { rawValue }
  public var reversed: ContextRole { self == .production ? .recovery : .production }
}

/// One context as configured on this server (Schemas/context-config.schema.json).
public struct ContextConfig: Codable, Sendable, Equatable {
  public static let currentFormat = 1

  public var format: Int
  public var id: ContextID
  /// The node directory of this context on this server.
  public var node: String
  /// This server's name (what `rtdr -s` names) and its part in the context.
  public var server: String
  public var role: ContextRole
  /// Every server of the context this server knows of, this one included.
  public var servers: [Server]
  /// Set by `rtdr -C X -F Y setup`: the failover context and the recovery server all
  /// later failover, resync and failback use.
  public var failover: Failover?
  /// Set on a failover context: the context it reverses.
  public var reverseOf: ContextID?
  public var createdMicros: Int64

  public struct Server: Codable, Sendable, Equatable {
    /// nil while not known (a production server's name, seen from a recovery server
    /// before setup asked it).
    public var name: String?
    /// Where its node serves as a primary, `HOST:PORT`.
    public var address: String?
    public var role: ContextRole
    public var node: NodeID?

    public init(name: String?, address: String?, role: ContextRole, node: NodeID?) {
      self.name = name
      self.address = address
      self.role = role
      self.node = node
    }
  }

  public struct Failover: Codable, Sendable, Equatable {
    public var context: ContextID
    public var site: String
  }

  public var production: Server? { servers.first { $0.role == .production } }
  public var recoveryServers: [Server] { servers.filter { $0.role == .recovery } }
  public func server(named name: String) -> Server? { servers.first { $0.name == name } }
}

/// Where a context's disaster-recovery cycle stands on this server (one file per primary
/// context, `contexts/ID.state.json`; a failover context shares its primary context's).
public struct ContextState: Codable, Sendable, Equatable {
  /// The context whose roles hold now: X, or its failover context after failover.
  public var active: ContextID
  /// `rtstop -F` ran and no `rtstart` since (what `scconfig -M` asks for).
  public var fullStop: Bool
  /// The `rtdr` operation started and not yet finished here: a different one is refused
  /// until it is run again to the end.
  public var operation: String?
  /// The resync's decision, kept so that a re-run finishes the same way.
  public var resync: ResyncDecision?
  /// The last operation finished here, and what it printed last (a re-run reports it).
  public var completed: String?

  public struct ResyncDecision: Codable, Sendable, Equatable {
    public var fullCopy: Bool
    public var why: String
    public var to: MATPosition?
    public var primary: String
    public var generation: Generation
  }

  public init(active: ContextID) {
    self.active = active
    fullStop = false
  }
}

public struct ServerHome: Sendable {
  public let path: String
  public static let defaultPath = "/var/lib/understudy"
  public static let environmentVariable = "UNDERSTUDY_HOME"

  public init(path: String) {
    self.path = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
  }

  /// `--home`, else `UNDERSTUDY_HOME`, else /var/lib/understudy.
  public static func resolve(_ option: String?) -> ServerHome {
    let chosen = option ?? ProcessInfo.processInfo.environment[environmentVariable] ?? defaultPath
    return ServerHome(path: NodeSetup.absolute(chosen))
  }

  var contexts: String { path + "/contexts" }
  public func configPath(_ id: ContextID) -> String { contexts + "/\(id).json" }
  public func statePath(_ id: ContextID) -> String { contexts + "/\(id).state.json" }

  public func exists(_ id: ContextID) -> Bool { FileManager.default.fileExists(atPath: configPath(id)) }

  public func load(_ id: ContextID) throws -> ContextConfig {
    guard let config = try StateFile.read(ContextConfig.self, at: configPath(id)) else {
      throw MIMIXError.noContext(id: id, home: path, known: (try? ids()) ?? [])
    }
    guard config.format == ContextConfig.currentFormat, config.id == id else {
      throw MIMIXError.badContextFile(
        path: configPath(id),
        reason: config.id != id
          ? "it describes context \(config.id)"
          : "format \(config.format); this build reads \(ContextConfig.currentFormat)")
    }
    return config
  }

  public func save(_ config: ContextConfig) throws {
    try FileManager.default.createDirectory(atPath: contexts, withIntermediateDirectories: true)
    try StateFile.write(config, to: configPath(config.id))
  }

  /// The context IDs configured here, in order.
  public func ids() throws -> [ContextID] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: contexts) else { return [] }
    return names.compactMap { name in
      guard name.hasSuffix(".json"), !name.hasSuffix(".state.json") else { return nil }
      return try? ContextID(parsing: String(name.dropLast(5)))
    }.sorted()
  }

  /// The state of primary context `id` (nil file: nothing has happened yet).
  public func state(_ id: ContextID) throws -> ContextState {
    try StateFile.read(ContextState.self, at: statePath(id)) ?? ContextState(active: id)
  }

  public func saveState(_ state: ContextState, of id: ContextID) throws {
    try FileManager.default.createDirectory(atPath: contexts, withIntermediateDirectories: true)
    try StateFile.write(state, to: statePath(id))
  }

  /// `init … --context ID --name NAME`: registers the new node as context `id` on this
  /// server. A context already registered for another node is refused, naming it.
  public func register(
    id: ContextID, node: String, server: String, role: ContextRole, production: String?
  ) throws -> ContextConfig {
    let layout = NodeLayout(root: NodeSetup.absolute(node))
    if exists(id) {
      let existing = try load(id)
      guard existing.node == layout.root else {
        throw MIMIXError.contextTaken(id: id, home: path, node: existing.node)
      }
    }
    try ServerName.check(server)
    var nodeConfig = try layout.loadConfig()
    nodeConfig.server = server
    try layout.saveConfig(nodeConfig)
    let me = ContextConfig.Server(name: server, address: nodeConfig.listen, role: role, node: nodeConfig.nodeId)
    var servers = [me]
    if role == .recovery { servers.insert(.init(name: nil, address: production, role: .production, node: nil), at: 0) }
    let config = ContextConfig(
      format: ContextConfig.currentFormat, id: id, node: layout.root, server: server, role: role, servers: servers,
      failover: nil, reverseOf: nil, createdMicros: Clock.nowMicros())
    try save(config)
    return config
  }
}

public enum ServerName {
  /// The machine's host name: a recovery server's name when `--name` is not given.
  public static func local() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
    return String(cString: buffer)
  }

  static func check(_ name: String) throws {
    let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
    guard !name.isEmpty, name.count <= 255, name.allSatisfy(allowed.contains) else {
      throw MIMIXError.badServerName(name)
    }
  }
}
