// `rtdr`: the MIMIX disaster-recovery cycle, built on the engine's procedures.
//
//   setup     both servers   failover context Y = context X with the roles reversed
//   failover  recovery       takeover (735, 888 or 858), its daemon serves, Y active
//   resync    both           production: file recovery to the 888 position and follow
//                            (or a full copy, saying why), until it has applied all
//   failback  recovery, then production: the planned switchover; X active again
//
// Each operation is first planned from what the servers hold now, without changing
// anything (`-n` prints the plan; the prompt shows it), then run step by step. The
// operation is journaled in the context's state before its first step and cleared after
// its last, and every step is one of the engine's restartable procedures, so a kill at
// any step and the same command again end in the same state.

import Apply
import AuditTrail
import Backup
import Foundation
import Link
import Node
import Primary
import Procedures

public enum RTDROperation: String, Sendable, CaseIterable {
  case setup, failover, resync, failback
}

public struct RTDROptions: Sendable {
  public var home: ServerHome
  public var context: ContextID
  public var failoverContext: ContextID?
  public var site: String?
  public var forced: Bool
  /// Bounds every wait (the drain, catching up, the switchover).
  public var timeout: Double
  /// The `understudy` binary, for the daemons it starts.
  public var executable: String

  public init(
    home: ServerHome, context: ContextID, failoverContext: ContextID?, site: String?, forced: Bool, timeout: Double,
    executable: String
  ) {
    self.home = home
    self.context = context
    self.failoverContext = failoverContext
    self.site = site
    self.forced = forced
    self.timeout = timeout
    self.executable = executable
  }
}

/// One step: the engine command it amounts to, and what running it does.
public struct RTDRStep {
  public var command: String
  public var what: String
  let run: () throws -> RTDRStepResult
}

public struct RTDRStepResult: Sendable {
  public var text: String
  public var json: JSON
  public init(_ text: String, _ json: JSON = .object([])) {
    self.text = text
    self.json = json
  }
}

public struct RTDRPlan {
  public var operation: RTDROperation
  public var context: ContextID
  public var server: String
  /// What the operation will do, in a few sentences (shown before the prompt).
  public var summary: [String]
  public var steps: [RTDRStep]
  /// Called once every step has run: the context's state, and the closing lines.
  let finish: () throws -> RTDRStepResult
}

public struct RTDRReport: Sendable {
  public var operation: RTDROperation
  public var context: ContextID
  public var server: String
  public var steps: [(command: String, result: RTDRStepResult)]
  public var outcome: RTDRStepResult

  public var json: JSON {
    .object([
      ("operation", .string(operation.rawValue)), ("context", .int(Int64(context.rawValue))),
      ("server", .string(server)),
      (
        "steps",
        .array(
          steps.map {
            .object([
              ("command", .string($0.command)), ("result", .string($0.result.text)), ("details", $0.result.json),
            ])
          })
      ),
      ("result", .string(outcome.text)), ("details", outcome.json),
    ])
  }
}

public enum RTDR {
  /// What the operation would do, refused now if it would be refused later. Changes
  /// nothing here or on the other server (it may ask the other server where it stands).
  public static func plan(_ operation: RTDROperation, _ options: RTDROptions) throws -> RTDRPlan {
    var s = try Situation(options)
    if let running = s.state.operation, running != operation.rawValue {
      throw MIMIXError.interrupted(context: s.context.id, operation: running)
    }
    switch operation {
    case .setup: return try setup(&s)
    case .failover: return try failover(s)
    case .resync: return try s.context.role == .production ? resyncProduction(s) : resyncAtSite(s)
    case .failback: return try s.context.role == .production ? failbackProduction(s) : failbackAtSite(s)
    }
  }

  /// Runs the plan's steps in order; `step` hears each one as it starts and ends.
  public static func run(
    _ plan: RTDRPlan, _ options: RTDROptions, step: (String, RTDRStepResult?) -> Void = { _, _ in }
  ) throws -> RTDRReport {
    let home = options.home
    let id = plan.context
    var state = try home.state(id)
    let node = try home.load(id).node
    let layout = NodeLayout(root: node)
    let events = EventLog(layout: layout, node: (try? layout.loadConfig().nodeId.description) ?? "?")
    let began = state.operation == nil
    if began {
      state.operation = plan.operation.rawValue
      try home.saveState(state, of: id)
      events.log(
        .rtdrStarted, "rtdr -C \(id) \(plan.operation.rawValue) started on server \(plan.server)",
        [("context", .int(Int64(id.rawValue)))])
    }
    var done: [(String, RTDRStepResult)] = []
    for s in plan.steps {
      step(s.command, nil)
      let result: RTDRStepResult
      do {
        result = try s.run()
      } catch let refusal as MIMIXError where began && done.isEmpty {
        // Refused by its first step, before anything changed (production still answers):
        // nothing was begun, so nothing is left to finish.
        state.operation = nil
        try home.saveState(state, of: id)
        throw refusal
      }
      step(s.command, result)
      done.append((s.command, result))
      Failpoint.reached("rtdr-step")
    }
    let outcome = try plan.finish()
    state = try home.state(id)
    state.operation = nil
    state.completed = plan.operation.rawValue
    try home.saveState(state, of: id)
    events.log(
      .rtdrComplete, "rtdr -C \(id) \(plan.operation.rawValue) complete on server \(plan.server): \(outcome.text)",
      [("context", .int(Int64(id.rawValue)))])
    return RTDRReport(operation: plan.operation, context: id, server: plan.server, steps: done, outcome: outcome)
  }

  // MARK: setup

  static func setup(_ s: inout Situation) throws -> RTDRPlan {
    let x = s.context
    guard let y = s.options.failoverContext else { throw MIMIXError.notSetUp(context: x.id) }
    guard y != x.id else { throw MIMIXError.failoverSameAsContext(y) }
    if let existing = x.failover, existing.context != y {
      throw MIMIXError.otherFailoverContext(context: x.id, existing: existing.context, site: existing.site)
    }
    if s.home.exists(y) {
      let other = try s.home.load(y)
      guard other.reverseOf == x.id else {
        throw MIMIXError.failoverIDTaken(
          id: y, home: s.home.path,
          by: other.reverseOf.map { "the failover context of \($0)" } ?? "context \(y) (node \(other.node))")
      }
    }
    // Who takes part: production lists the backups that named themselves, and each of
    // them the next hops it relays to (a cascade); a recovery server asks production, when
    // it answers, finding it through the relays between (its own primary may be one).
    var servers = x.servers
    var unnamed: [String] = []
    var hops: [String] = []  // the recovery servers in replication order, this one too
    func add(_ name: String?, _ listen: String?, _ node: NodeID) {
      guard let name, let listen else {
        if let listen { unnamed.append(listen) }
        return
      }
      if !hops.contains(name) { hops.append(name) }
      guard name != x.server else { return }
      servers.removeAll { $0.name == name || $0.node == node }
      servers.append(.init(name: name, address: listen, role: .recovery, node: node))
    }
    /// The next hops of the backups found so far, breadth first, each asked once.
    func addHops(from first: [ContextAnswer.Backup]) {
      var queue = first
      var asked: Set<NodeID> = []
      while !queue.isEmpty {
        let b = queue.removeFirst()
        add(b.server, b.listen, b.node)
        guard let listen = b.listen, asked.insert(b.node).inserted, asked.count <= 16,
          let answer = try? s.ask(listen, timeout: 2), answer.role == .backup
        else { continue }
        queue += answer.backups
      }
    }
    if x.role == .production {
      addHops(
        from: try Fencing.knownBackups(s.layout).map {
          .init(node: $0.node, server: $0.server, listen: $0.listen, attached: false, acked: nil, applied: nil)
        })
    } else if let (production, answer) = s.findProduction() {
      servers.removeAll { $0.role == .production }
      servers.insert(.init(name: answer.server, address: production, role: .production, node: answer.node), at: 0)
      addHops(from: answer.backups)
    }
    let names = servers.filter { $0.role == .recovery }.compactMap(\.name)
    let site: String
    if let chosen = s.options.site {
      guard names.contains(chosen) else {
        throw MIMIXError.unknownServer(name: chosen, context: x.id, known: names)
      }
      site = chosen
    } else if let first = x.failover?.site ?? hops.first(where: names.contains) ?? names.first {
      site = first  // the first replication hop: the first backup that came
    } else {
      throw MIMIXError.noRecoveryServer(context: x.id, unnamed: unnamed)
    }
    var reversed = x
    reversed.id = y
    reversed.reverseOf = x.id
    reversed.failover = nil
    reversed.role = x.server == site ? .production : .recovery
    reversed.servers = servers.map { server in
      var r = server
      r.role = server.name == site ? .production : .recovery
      return r
    }
    reversed.servers =
      reversed.servers.filter { $0.role == .production } + reversed.servers.filter { $0.role == .recovery }
    reversed.createdMicros = Clock.nowMicros()
    var forward = x
    forward.servers = servers
    forward.failover = .init(context: y, site: site)
    let home = s.home
    let already = x.failover == forward.failover && home.exists(y)
    let production = servers.first { $0.role == .production }?.name ?? "production"
    return RTDRPlan(
      operation: .setup, context: x.id, server: x.server,
      summary: [
        "Set up failover context \(y) for context \(x.id) on this server (\(x.server)): the same data with the roles reversed, \(site) its production and \(production) its recovery server.",
        "Later failover, resync and failback of context \(x.id) use recovery server \(site).",
      ],
      steps: [
        RTDRStep(
          command: "write \(home.configPath(y))",
          what: "failover context \(y): context \(x.id) reversed, production \(site)",
          run: {
            if home.exists(y), try home.load(y).reverseOf == x.id {
              var kept = try home.load(y)
              kept.servers = reversed.servers
              kept.role = reversed.role
              try home.save(kept)
            } else {
              try home.save(reversed)
            }
            return RTDRStepResult("context \(y) written (this server: \(reversed.role))")
          }),
        RTDRStep(
          command: "write \(home.configPath(x.id))",
          what: "context \(x.id) records failover context \(y) and site \(site)",
          run: {
            try home.save(forward)
            return RTDRStepResult("context \(x.id): failover context \(y), site \(site)")
          }),
      ],
      finish: {
        RTDRStepResult(
          already
            ? "failover context \(y) was already set up (site \(site)); refreshed"
            : "failover context \(y) set up; failover site \(site)",
          .object([
            ("failoverContext", .int(Int64(y.rawValue))), ("site", .string(site)),
            ("servers", .array(servers.map(\.json))),
          ]))
      })
  }

  // MARK: failover

  static func failover(_ s: Situation) throws -> RTDRPlan {
    let x = s.context
    let (y, site) = try s.setUp()
    guard x.role == .recovery else {
      throw MIMIXError.wrongServer(
        operation: "failover", context: x.id, runsOn: "the recovery server \(site)", this: x.server)
    }
    guard site == x.server else { throw MIMIXError.notTheSite(context: x.id, site: site, this: x.server) }
    let layout = s.layout
    let node = layout.root
    let home = s.home
    let forced = s.options.forced
    let executable = s.options.executable
    let production = x.production?.address ?? s.node.primary ?? "?"
    var takeover: TakeoverResult?
    // RDF's triple contingency: another recovery server that received more than this one
    // would be left holding transactions the new production never had.
    var ahead = s.node.role == .backup ? try s.recoveryServersAhead() : []
    // Fed by a relay (a cascade) that received more: that is on its way here while the
    // daemon streams from it. Wait for it, a bounded while, before naming it.
    let upstream = x.recoveryServers.first { $0.address == s.node.primary }?.name
    let deadline = Clock.monotonicSeconds() + 10
    while ahead.contains(where: { $0.name == upstream }), DaemonLock.isHeld(layout),
      Clock.monotonicSeconds() < deadline
    {
      usleep(200_000)
      ahead = try s.recoveryServersAhead()
    }
    if !ahead.isEmpty && !forced { throw MIMIXError.otherServerAhead(context: x.id, this: x.server, ahead: ahead) }
    let aheadNote = ahead.map {
      "\($0.name) received more (to \($0.end), this server to \($0.mine)): it needs a full copy to follow the new production"
    }
    return RTDRPlan(
      operation: .failover, context: x.id, server: x.server,
      summary: [
        "Fail context \(x.id) over to this server (\(x.server)): the backup takes over from production at \(production)"
          + (forced ? " even if production still answers (-f)" : ", which must be lost") + ".",
        "It applies every whole transaction it received and reports 735 and 888 (the position production's file recovery will use) or 858; then it serves as production of failover context \(y).",
      ] + aheadNote.map { "-f: \($0)." },
      steps: [
        RTDRStep(
          command: "understudy takeover --node \(node)" + (forced ? " --force" : ""),
          what: "take over: 735, then 888 or 858; generation g+1",
          run: {
            do {
              let result = try Takeover.run(node: node, force: forced)
              takeover = result
              let recovery =
                result.fileRecovery.map { "888 file-recovery position \($0)" }
                ?? "858 no file-recovery position: \(result.reason ?? "")"
              return RTDRStepResult(
                "735 safe MAT position \(result.safe); \(recovery); checksum \(result.checksum); generation \(result.generation)",
                result.json)
            } catch let TakeoverError.primaryReachable(_, primary, how) {
              throw MIMIXError.productionAnswers(context: x.id, address: primary, detail: how)
            }
          }),
        daemonStep(layout, context: y, executable: executable),
        activateStep(
          home, of: x.id, active: y, what: "this server is now the production server of failover context \(y)",
          says: "context \(y) active: \(x.server) is its production server"),
        tellOthersStep(s, besides: [x.production?.name]),
      ],
      finish: {
        let t = takeover!
        let done =
          t.fileRecovery.map {
            "failover complete: \(x.server) is production (generation \(t.generation)); production's resync will recover it to \($0) (888)"
          }
          ?? "failover complete: \(x.server) is production (generation \(t.generation)); 858: production's resync will be a full copy (\(t.reason ?? ""))"
        return RTDRStepResult(
          done + aheadNote.map { "; \($0)" }.joined(),
          .object([
            ("takeover", t.json), ("active", .int(Int64(y.rawValue))),
            (
              "ahead",
              .array(
                ahead.map { .object([("server", .string($0.name)), ("received", $0.end.json), ("own", $0.mine.json)]) })
            ),
          ]))
      })
  }

  // MARK: resync

  /// On the acting production: its daemon serves; once production follows it, wait until
  /// production has applied everything.
  static func resyncAtSite(_ s: Situation) throws -> RTDRPlan {
    let x = s.context
    let (y, site) = try s.setUp()
    guard site == x.server else { throw MIMIXError.notTheSite(context: x.id, site: site, this: x.server) }
    guard s.state.active == y, s.node.role == .primary else {
      throw MIMIXError.notFailedOver(context: x.id, operation: "resync", site: site)
    }
    let layout = s.layout
    let timeout = s.options.timeout
    let productionNode = s.node.generationBase?.priorNode ?? x.production?.node
    let productionName = x.production?.name ?? x.production?.address ?? "production"
    var outcome = RTDRStepResult("")
    return RTDRPlan(
      operation: .resync, context: x.id, server: x.server,
      summary: [
        "Resync context \(x.id), on the acting production (\(x.server)): its daemon serves failover context \(y), and once production (\(productionName)) follows it, this waits until production has applied everything committed here."
      ],
      steps: [
        daemonStep(layout, context: y, executable: s.options.executable),
        RTDRStep(
          command: "understudy status --node \(layout.root)",
          what: "wait until production has applied this server's MAT",
          run: {
            outcome = try waitInSync(layout, production: productionNode, timeout: timeout, context: x.id)
            return outcome
          }),
      ],
      finish: { outcome })
  }

  /// How long an acknowledgement may lag behind what the backup holds: a few of the
  /// primary's heartbeat intervals. A check of "attached" or "caught up" waits this long
  /// before it refuses.
  static let ackGrace = 2.0

  /// How long a backup may take to attach again after this primary's daemon started: its
  /// receiver's retry backoff grows to 5 s (Sources/Backup/Receiver.swift), plus the handshake.
  static let reconnectGrace = 7.0

  /// Production is attached and has applied everything: "in sync". Not attached: it
  /// has not resynced yet (production's own resync waits; this one need not).
  static func waitInSync(_ layout: NodeLayout, production: NodeID?, timeout: Double, context: ContextID) throws
    -> RTDRStepResult
  {
    let deadline = Clock.monotonicSeconds() + timeout
    let attachGrace = Clock.monotonicSeconds() + reconnectGrace
    // What was committed when it began: writers may go on meanwhile.
    let end = try NodeStatus.read(node: layout.root).durableEnd
    while true {
      let attached = try PrimaryServer.readAttached(layout).first { production == nil || $0.nodeID == production }
      guard let attached else {
        if Clock.monotonicSeconds() < attachGrace {
          usleep(50_000)
          continue
        }
        return RTDRStepResult(
          "production has not resynced yet: run `rtdr -C \(context) resync` on production; it ends in sync by itself",
          .object([("inSync", .bool(false)), ("end", end.json)]))
      }
      if let applied = attached.applied, applied >= end {
        return RTDRStepResult(
          "in sync: production applied everything up to \(end)",
          .object([("inSync", .bool(true)), ("end", end.json), ("applied", applied.json)]))
      }
      if Clock.monotonicSeconds() > deadline {
        throw MIMIXError.timedOut(
          what: "production catching up to \(end)", seconds: timeout,
          detail: "it applied \(attached.applied.map(\.description) ?? "nothing yet"); run resync again to keep waiting"
        )
      }
      usleep(50_000)
    }
  }

  /// On the revived production: brought to exactly what the acting production holds
  /// (file recovery to the 888 position, or a full copy, saying why), then it follows.
  static func resyncProduction(_ s: Situation) throws -> RTDRPlan {
    let x = s.context
    let (y, site) = try s.setUp()
    let address = try s.siteAddress(site)
    let layout = s.layout
    let node = layout.root
    let home = s.home
    let timeout = s.options.timeout
    let executable = s.options.executable
    let secret = layout.secretKey
    // Already following the acting production (a re-run): start and wait.
    var following = s.node.role == .backup && s.node.primary == address
    var decision = s.state.resync
    func askSite() throws -> ContextAnswer {
      do {
        return try s.ask(address)
      } catch {
        throw MIMIXError.siteUnreachable(context: x.id, site: site, address: address, detail: "\(error)")
      }
    }
    // Asked once: not at all when a full copy is already under way; while following, a
    // site that does not answer is no reason to stop a re-run that only starts and waits.
    let asked: ContextAnswer? =
      following && decision?.fullCopy == true ? nil : following ? try? askSite() : try askSite()
    // Following, but the acting production's statemap was marked dirty since (and this
    // is no full copy already under way): the mark asks for a full copy, so one is made.
    let marked = following && decision?.fullCopy != true && asked?.statemap.dirty == true
    if marked {
      following = false
      decision = nil
    }
    if decision == nil || !following {
      let answer = try asked ?? askSite()
      guard answer.role == .primary, answer.generation > s.node.generation || following || marked else {
        throw MIMIXError.notFailedOver(context: x.id, operation: "resync", site: site)
      }
      // The statemap was marked dirty after the decision was recorded: the follow would
      // be refused at every re-run. A full copy, which is always safe, instead.
      if let recorded = decision, !recorded.fullCopy, answer.statemap.dirty { decision = nil }
      decision = decision ?? resyncDecision(s, answer: answer, address: address)
    }
    let chosen = decision!
    var steps: [RTDRStep] = []
    if !following {
      steps.append(
        RTDRStep(
          command: "record the decision in \(home.statePath(x.id))",
          what: chosen.fullCopy ? "a full copy: \(chosen.why)" : "file recovery to \(chosen.to!), then follow",
          run: {
            var state = try home.state(x.id)
            state.resync = chosen
            try home.saveState(state, of: x.id)
            return RTDRStepResult(chosen.fullCopy ? "full copy: \(chosen.why)" : chosen.why)
          }))
      steps.append(
        RTDRStep(
          command: "understudy stop --node \(node)", what: "this node's daemon stops (if it runs)",
          run: {
            let pid = try DaemonLock.stopIfRunning(layout)
            return RTDRStepResult(pid.map { "stopped (pid \($0))" } ?? "not running")
          }))
      if let to = chosen.to, !chosen.fullCopy {
        steps.append(
          RTDRStep(
            command: "understudy recover --node \(node) --to-mat \(to)",
            what: "file recovery to the 888 position; the undone transactions listed",
            run: {
              let r = try FileRecovery.run(node: node, to: to, report: nil)
              return RTDRStepResult(
                "400: recovered to \(r.recoveredTo); undid \(r.undone) transactions, listed in \(r.report); checksum \(r.checksum)",
                r.json)
            }))
      }
      steps.append(
        RTDRStep(
          command: "understudy follow --node \(node) --primary \(address) --secret-file \(secret)"
            + (chosen.fullCopy ? " --full-copy" : ""),
          what: chosen.fullCopy ? "set the database aside; the daemon copies production's" : "follow from the base",
          run: {
            let r = try Follow.run(node: node, primary: address, secretFile: secret, fullCopy: chosen.fullCopy)
            return RTDRStepResult(
              r.from.map { "follows \(address) (generation \(r.generation)) from \($0)" }
                ?? "follows \(address) (generation \(r.generation)); database set aside (\(r.setAside ?? "")), copied at start",
              r.json)
          }))
    }
    steps.append(daemonStep(layout, context: x.id, executable: executable))
    var synced = RTDRStepResult("")
    steps.append(
      RTDRStep(
        command: "understudy wait --node \(node) --applied END",
        what: "wait until this node has applied everything the acting production had committed",
        run: {
          let config = try layout.loadConfig()
          let end = try s.ask(address).durableEnd
          do {
            let applied = try AppliedWait.wait(node: node, for: end, timeout: timeout)
            let checksum = try DatabaseChecksum.current(databaseAt: config.database).checksum
            synced = RTDRStepResult(
              "in sync: applied everything up to \(applied) from \(site); checksum \(checksum)",
              .object([("inSync", .bool(true)), ("applied", applied.json), ("checksum", .string(checksum))]))
            return synced
          } catch let timedOut as AppliedWait.TimedOut {
            throw MIMIXError.timedOut(
              what: "catching up to \(end)", seconds: timeout, detail: "\(timedOut); run resync again to keep waiting")
          }
        }))
    return RTDRPlan(
      operation: .resync, context: x.id, server: x.server,
      summary: [
        "Resync context \(x.id) on production (\(x.server)) from the acting production \(site) at \(address) (failover context \(y)):",
        chosen.fullCopy
          ? "a FULL COPY of the database, because \(chosen.why). The current database is set aside, not deleted."
          : "file recovery to the 888 position \(chosen.to!): every transaction production committed that \(site) never received is undone and listed in a lost-transactions report; then it follows \(site).",
        "It then applies what \(site) committed since the failover, and ends in sync.",
      ],
      steps: steps,
      finish: {
        RTDRStepResult(
          "\(synced.text) (\(chosen.fullCopy ? "full copy: \(chosen.why)" : "file recovery to \(chosen.to!)"))",
          .object([
            ("fullCopy", .bool(chosen.fullCopy)), ("why", .string(chosen.why)), ("to", chosen.to?.json ?? .null),
            ("sync", synced.json),
          ]))
      })
  }

  /// File recovery when the takeover gave 888, the acting production's statemap is
  /// clean, its generation began from this node's MAT and this node still has its
  /// database; a full copy otherwise, and why.
  static func resyncDecision(_ s: Situation, answer: ContextAnswer, address: String) -> ContextState.ResyncDecision {
    func full(_ why: String) -> ContextState.ResyncDecision {
      .init(fullCopy: true, why: why, to: nil, primary: address, generation: answer.generation)
    }
    if answer.statemap.dirty { return full("the statemap is dirty (\(answer.statemap.why ?? "marked"))") }
    guard FileManager.default.fileExists(atPath: s.node.database) else {
      return full("production's database \(s.node.database) is missing")
    }
    guard let base = answer.base, base.priorNode == s.node.nodeId else {
      return full("the acting production's generation did not begin from this node's MAT")
    }
    guard let to = answer.fileRecovery else {
      return full("its takeover reported 858: \(answer.noFileRecovery ?? "no file-recovery position")")
    }
    // A failover restore on the recovery server may have gone back further than this
    // node's MAT still reaches (its retention purged the file).
    guard s.layout.mat.fileExists(sno: to.sno) else {
      return full(
        "the 888 position \(to) lies in MAT file \(TrailFormat.fileName(sno: to.sno)), which this node no longer holds (MAT retention removed it)"
      )
    }
    if let recovered = s.node.superseded?.recoveredTo, recovered != to {
      return full("this node was already recovered to \(recovered), not to the 888 position \(to)")
    }
    return .init(
      fullCopy: false, why: "the takeover reported 888 at \(to): file recovery to it, then follow", to: to,
      primary: address, generation: answer.generation)
  }

  // MARK: failback

  /// On the acting production: the planned switchover back to production.
  static func failbackAtSite(_ s: Situation) throws -> RTDRPlan {
    let x = s.context
    let (y, site) = try s.setUp()
    guard site == x.server else { throw MIMIXError.notTheSite(context: x.id, site: site, this: x.server) }
    let layout = s.layout
    let node = layout.root
    let home = s.home
    let timeout = s.options.timeout
    let productionName = x.production?.name ?? x.production?.address ?? "production"
    // Killed after the switchover, before the state said so: only the last step is left.
    // Run again once done: it reports the same.
    let switched = s.state.operation == RTDROperation.failback.rawValue && s.node.role == .backup
    let done = s.state.active == x.id && s.state.completed == RTDROperation.failback.rawValue && s.node.role == .backup
    var steps: [RTDRStep] = []
    if !switched && !done {
      guard s.state.active == y, s.node.role == .primary else {
        throw MIMIXError.notFailedOver(context: x.id, operation: "failback", site: site)
      }
      let productionNode = s.node.generationBase?.priorNode ?? x.production?.node
      // Without the daemon, what production applied is a dead daemon's last word (its
      // attached file), and nothing would ever drain.
      guard DaemonLock.isHeld(layout) else { throw MIMIXError.daemonNotRunning(context: x.id, operation: "failback") }
      // An acknowledgement may lag: wait for it briefly before refusing; a production
      // that is reconnecting (this daemon just started) longer.
      var attached: AttachedBackup?
      let end = try NodeStatus.read(node: node).durableEnd
      let grace = Clock.monotonicSeconds() + ackGrace
      let attachGrace = Clock.monotonicSeconds() + reconnectGrace
      repeat {
        attached = try PrimaryServer.readAttached(layout).first { $0.nodeID == productionNode }
        if let applied = attached?.applied, applied >= end { break }
        usleep(50_000)
      } while Clock.monotonicSeconds() < (attached == nil ? attachGrace : grace)
      guard let attached else { throw MIMIXError.notResynced(context: x.id, production: productionName) }
      if (attached.applied ?? MATPosition(sno: 0, rba: 0)) < end {
        guard s.options.forced else { throw MIMIXError.notCaughtUp(context: x.id, applied: attached.applied, end: end) }
        steps.append(
          RTDRStep(
            command: "understudy status --node \(node)", what: "wait for production to drain the backlog (-f)",
            run: { try waitInSync(layout, production: productionNode, timeout: timeout, context: x.id) }))
      }
      steps.append(
        RTDRStep(
          command: "understudy switchover --node \(node) --timeout \(Int(timeout))",
          what: "planned switchover: writes stop here, production applies the switchover record and becomes primary",
          run: {
            let r = try Switchover.run(node: node, timeout: timeout, to: productionNode)
            return RTDRStepResult(
              "switchover record \(r.record); \(r.newPrimaryAddress) is primary (generation \(r.generation)); checksum \(r.checksum)",
              r.json)
          }))
    }
    steps.append(
      activateStep(
        home, of: x.id, active: x.id,
        what: "context \(x.id) holds again: \(productionName) is production, this server its recovery server",
        says: "context \(x.id) active"))
    return RTDRPlan(
      operation: .failback, context: x.id, server: x.server,
      summary: [
        "Fail context \(x.id) back from this server (\(x.server)) to production \(productionName): a planned switchover. Writes here stop, production applies everything and becomes primary again; nothing is lost and no file recovery is needed.",
        "Then run `rtdr -C \(x.id) failback` on production.",
      ],
      steps: steps,
      finish: {
        let config = try layout.loadConfig()
        let checksum = try DatabaseChecksum.current(databaseAt: config.database).checksum
        return RTDRStepResult(
          "failback done here: \(x.server) is the recovery server again (generation \(config.generation)); checksum \(checksum). Now run `rtdr -C \(x.id) failback` on production",
          .object([
            ("generation", .int(Int64(config.generation.rawValue))), ("checksum", .string(checksum)),
            ("active", .int(Int64(x.id.rawValue))),
          ]))
      })
  }

  /// On production, after the recovery server's failback: it is primary again.
  static func failbackProduction(_ s: Situation) throws -> RTDRPlan {
    let x = s.context
    let (_, site) = try s.setUp()
    let layout = s.layout
    let home = s.home
    let timeout = s.options.timeout
    if s.node.role == .backup {
      // The switchover has not reached this node: refused while the site is still primary.
      if let address = try? s.siteAddress(site), let answer = try? s.ask(address), answer.role == .primary,
        answer.generation >= s.node.generation
      {
        throw MIMIXError.failbackFirstOnSite(context: x.id, site: site)
      }
      guard s.state.resync != nil || s.state.active != x.id else {
        throw MIMIXError.notFailedOver(context: x.id, operation: "failback", site: site)
      }
    } else if s.state.operation != RTDROperation.failback.rawValue, s.state.active == x.id, s.state.resync == nil,
      s.state.completed != RTDROperation.failback.rawValue
    {
      throw MIMIXError.notFailedOver(context: x.id, operation: "failback", site: site)
    }
    return RTDRPlan(
      operation: .failback, context: x.id, server: x.server,
      summary: [
        "Finish the failback of context \(x.id) on production (\(x.server)): once the switchover made this node primary again, its daemon serves and context \(x.id) is active."
      ],
      steps: [
        RTDRStep(
          command: "understudy status --node \(layout.root)", what: "wait until this node is primary again",
          run: {
            let deadline = Clock.monotonicSeconds() + timeout
            while try layout.loadConfig().role != .primary {
              if Clock.monotonicSeconds() > deadline {
                throw MIMIXError.timedOut(
                  what: "this node becoming primary again", seconds: timeout,
                  detail: "run `rtdr -C \(x.id) failback` on \(site) first, with this node's daemon running")
              }
              usleep(50_000)
            }
            let config = try layout.loadConfig()
            return RTDRStepResult("primary of generation \(config.generation)")
          }),
        daemonStep(layout, context: x.id, executable: s.options.executable),
        activateStep(
          home, of: x.id, active: x.id, what: "context \(x.id) holds again",
          says: "context \(x.id) active: \(x.server) is production"),
        tellOthersStep(s, besides: [site]),
      ],
      finish: {
        let config = try layout.loadConfig()
        let checksum = try DatabaseChecksum.current(databaseAt: config.database).checksum
        let base = config.generationBase?.checksum
        return RTDRStepResult(
          "failback complete: \(x.server) is production again (generation \(config.generation)); checksum \(checksum)"
            + (base.map { $0 == checksum ? ", equal to the switchover's" : "; the switchover's was \($0)" } ?? ""),
          .object([
            ("generation", .int(Int64(config.generation.rawValue))), ("checksum", .string(checksum)),
            ("switchoverChecksum", base.map(JSON.string) ?? .null), ("active", .int(Int64(x.id.rawValue))),
          ]))
      })
  }

  /// Records which context's roles hold now (X, or its failover context after failover);
  /// a resync's decision is spent once the roles change.
  static func activateStep(_ home: ServerHome, of x: ContextID, active: ContextID, what: String, says: String)
    -> RTDRStep
  {
    RTDRStep(
      command: "activate context \(active) in \(home.statePath(x))", what: what,
      run: {
        var state = try home.state(x)
        state.active = active
        state.resync = nil
        try home.saveState(state, of: x)
        return RTDRStepResult(says)
      })
  }

  /// Tells the context's other recovery servers (not this one, nor `besides`) that this
  /// node's generation began and where it serves: each follows it if it holds exactly the
  /// base, or logs why not (9084, 9085). One that does not answer is reported, not fatal.
  static func tellOthersStep(_ s: Situation, besides: [String?]) -> RTDRStep {
    let others = s.context.recoveryServers.filter { $0.name != s.context.server && !besides.contains($0.name) }
    let layout = s.layout
    return RTDRStep(
      command: "tell the other recovery servers to follow: "
        + (others.isEmpty ? "none" : others.map { $0.name ?? $0.address ?? "?" }.joined(separator: ", ")),
      what: "each one that holds exactly this generation's base follows this server without a copy",
      run: {
        let config = try layout.loadConfig()
        guard !others.isEmpty, let base = config.generationBase, base.generation == config.generation,
          let listen = config.listen
        else { return RTDRStepResult("no other recovery server to tell") }
        let hint = FollowHint(address: listen, node: config.nodeId, generation: config.generation, base: base)
        let me = LinkIdentity(config, key: try Secret.load(path: layout.secretKey))
        var told: [String] = []
        for other in others {
          let name = other.name ?? other.address ?? "?"
          do {
            let answer = try Handshake.sendFollowHint(hint, to: try HostPort(parsing: other.address ?? ""), as: me)
            told.append("\(name) told (it had received up to \(answer.durableEnd))")
          } catch {
            told.append("\(name) not reached (\(error)): it needs `understudy follow --full-copy`")
          }
        }
        return RTDRStepResult(told.joined(separator: "; "))
      })
  }

  /// Starts the node's daemon in the background unless it runs.
  static func daemonStep(_ layout: NodeLayout, context: ContextID, executable: String) -> RTDRStep {
    RTDRStep(
      command: "rtstart -C \(context)  (understudy start --node \(layout.root), in the background)",
      what: "the node's daemon runs and serves",
      run: {
        let pid = try ContextDaemon.start(layout, executable: executable)
        return RTDRStepResult(pid.map { "daemon started (pid \($0))" } ?? "daemon already running")
      })
  }
}

/// What an operation decides on: this server's context, its failover context, state and node.
struct Situation {
  let options: RTDROptions
  let home: ServerHome
  let context: ContextConfig
  var state: ContextState
  let layout: NodeLayout
  let node: NodeConfig

  init(_ options: RTDROptions) throws {
    self.options = options
    home = options.home
    let context = try home.load(options.context)
    if let of = context.reverseOf { throw MIMIXError.isFailoverContext(id: context.id, of: of) }
    self.context = context
    state = try home.state(context.id)
    layout = NodeLayout(root: context.node)
    node = try layout.loadConfig()
  }

  /// The failover context and site, or the refusal naming setup.
  func setUp() throws -> (ContextID, String) {
    guard let f = context.failover, home.exists(f.context) else { throw MIMIXError.notSetUp(context: context.id) }
    return (f.context, f.site)
  }

  /// Where the site serves as a primary.
  func siteAddress(_ site: String) throws -> String {
    if let address = context.server(named: site)?.address { return address }
    if let known = try Fencing.knownBackups(layout).first(where: { $0.server == site }) { return known.listen }
    throw MIMIXError.unknownServer(name: site, context: context.id, known: context.recoveryServers.compactMap(\.name))
  }

  /// The other recovery servers of the context that answer as backups of this node's
  /// generation having received more than this node's image trail holds.
  func recoveryServersAhead() throws -> [(name: String, end: MATPosition, mine: MATPosition)] {
    let mine = try imageEnd()
    var ahead: [(name: String, end: MATPosition, mine: MATPosition)] = []
    for other in context.recoveryServers where other.name != context.server {
      guard let address = other.address, let answer = try? ask(address, timeout: 2), answer.role == .backup,
        answer.generation == node.generation, answer.durableEnd > mine
      else { continue }
      ahead.append((other.name ?? address, answer.durableEnd, mine))
    }
    return ahead
  }

  /// Where this backup's image trail ends: read on from the safe position the purger
  /// recorded (a record boundary the image trail keeps; a copy's image trail does not
  /// start at a file's first record), not through the database, whose read-only open
  /// would leave -wal and -shm files behind (`-n` changes nothing).
  func imageEnd() throws -> MATPosition {
    guard let safe = try SafePosition.read(layout)?.safe, layout.image.fileExists(sno: safe.sno) else {
      return MATPosition(sno: 1, rba: 0)
    }
    let reader = try TrailReader(directory: layout.image, from: safe)
    while true {
      switch try reader.next() {
      case .record: continue
      case .end(let p), .tornTail(let p, _): return p
      }
    }
  }

  /// The production server as it answers, found from the one this server knows: when
  /// that is a relay (a backup passing on what it receives), through the primary it follows.
  func findProduction() -> (address: String, answer: ContextAnswer)? {
    guard let address = context.production?.address, let me = try? identity() else { return nil }
    return Handshake.findPrimary(from: address, as: me)
  }

  func ask(_ address: String, timeout: Double = 5) throws -> ContextAnswer {
    try Handshake.queryContext(try HostPort(parsing: address), as: try identity(), timeout: timeout).1
  }

  /// This node on the link, to ask the other servers.
  func identity() throws -> LinkIdentity { LinkIdentity(node, key: try Secret.load(path: layout.secretKey)) }
}

extension ContextConfig.Server {
  var json: JSON {
    .object([
      ("name", name.map(JSON.string) ?? .null), ("address", address.map(JSON.string) ?? .null),
      ("role", .string(role.rawValue)), ("node", node.map { .string($0.description) } ?? .null),
    ])
  }
}
