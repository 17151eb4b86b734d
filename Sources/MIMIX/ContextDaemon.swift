// `rtstart` and `rtstop`: a context's daemon run in the background (its own session, its
// output in NODE/daemon.log), started until it serves, stopped cleanly, or stopped after
// the backups have applied everything the production server committed (a drain).

import AuditTrail
import Foundation
import Node
import Primary

public enum ContextDaemon {
  public static func logPath(_ layout: NodeLayout) -> String { layout.root + "/daemon.log" }

  /// Starts `executable start --node NODE` in the background and returns once it serves:
  /// a primary once it listens (9001), a backup once its receiver runs (771). nil: it was
  /// running already.
  @discardableResult
  public static func start(_ layout: NodeLayout, executable: String, timeout: Double = 60) throws -> Int32? {
    if DaemonLock.isHeld(layout) { return nil }
    let config = try layout.loadConfig()
    let (_, eventsEnd) = try EventLog.read(layout, from: 0)
    let log = logPath(layout)
    let fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw TrailError.io(operation: "open", path: log, errno: errno) }
    defer { close(fd) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, fd, 1)
    posix_spawn_file_actions_adddup2(&actions, fd, 2)
    closeOnExec()
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    // Its own session: the daemon outlives the command and the terminal that started it.
    posix_spawnattr_setflags(&attributes, Int16(Self.spawnSetSID))
    let arguments = [executable, "start", "--node", layout.root]
    var argv = arguments.map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &actions, &attributes, &argv, environ)
    guard rc == 0 else { throw TrailError.io(operation: "posix_spawn \(executable)", path: layout.root, errno: rc) }
    let serving: EventCode = config.role == .primary ? .daemonStarted : .receiverStarted
    let deadline = Clock.monotonicSeconds() + timeout
    var offset = eventsEnd
    while true {
      var status: Int32 = 0
      if waitpid(pid, &status, WNOHANG) == pid {
        throw MIMIXError.daemonDidNotStart(
          node: layout.root, log: log, detail: "it exited (status \(status)): \(lastLine(of: log) ?? "no output")")
      }
      let (lines, end) = try EventLog.read(layout, from: offset)
      offset = end
      for line in lines where line.contains("\"code\":\(serving.rawValue),") { return pid }
      if Clock.monotonicSeconds() > deadline {
        throw MIMIXError.daemonDidNotStart(
          node: layout.root, log: log, detail: "no event \(serving.rawValue) within \(Int(timeout)) s")
      }
      usleep(20_000)
    }
  }

  /// What `rtstop -S` says to writers while it drains.
  public static let drainReason = "rtstop -S: the context is draining into its backups before its daemon stops"

  /// `rtstop -S`: writes blocked, every attached backup has applied the whole MAT, then
  /// the daemon stops and writes are allowed again (they are audited; the backups get
  /// them when the daemon runs again). On timeout the daemon keeps running.
  public static func drainAndStop(_ layout: NodeLayout, context: ContextID, timeout: Double) throws -> (
    end: MATPosition, pid: Int32?
  ) {
    let config = try layout.loadConfig()
    guard config.role == .primary else { throw MIMIXError.drainOnBackup(context: context) }
    // A backup that is reconnecting (after a switchover, say) is given a few seconds.
    let attachDeadline = Clock.monotonicSeconds() + min(timeout, 5)
    while try PrimaryServer.readAttached(layout).isEmpty || !DaemonLock.isHeld(layout) {
      guard Clock.monotonicSeconds() < attachDeadline else { throw MIMIXError.drainWithoutBackup(context: context) }
      usleep(50_000)
    }
    // Held by this process: if it is SIGKILLed, the primary's daemon lifts it.
    let held = try WriteBlock.setHeld(layout, reason: drainReason)
    let lifting = liftOnSignal(held)
    defer {
      try? held.release()
      for (signo, source) in lifting {
        source.cancel()
        signal(signo, SIG_DFL)
      }
    }
    let end = try NodeStatus.read(node: layout.root).durableEnd
    let deadline = Clock.monotonicSeconds() + timeout
    while true {
      let attached = try PrimaryServer.readAttached(layout)
      if !attached.isEmpty, attached.allSatisfy({ ($0.applied ?? MATPosition(sno: 0, rba: 0)) >= end }) { break }
      if Clock.monotonicSeconds() > deadline {
        let behind = attached.map { "\($0.peer) applied \($0.applied.map(\.description) ?? "nothing")" }
        throw MIMIXError.timedOut(
          what: "the drain to \(end)", seconds: timeout,
          detail: (behind.isEmpty ? "no backup attached" : behind.joined(separator: ", "))
            + "; the daemon keeps running")
      }
      usleep(20_000)
    }
    return (end, try DaemonLock.stopIfRunning(layout))
  }

  /// A drain interrupted (Ctrl-C, SIGTERM, a closed terminal) lifts its write block before
  /// the command ends: the daemon keeps running, and production must take writes again.
  /// (After a SIGKILL, the primary's daemon lifts the orphaned block; `rtstart` too.)
  static func liftOnSignal(_ held: WriteBlock.Holder) -> [(Int32, DispatchSourceSignal)] {
    [SIGINT, SIGTERM, SIGHUP].map { signo in
      signal(signo, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
      source.setEventHandler {
        try? held.release()
        FileHandle.standardError.write(
          Data("rtstop -S interrupted (signal \(signo)): writes are allowed again; the daemon keeps running\n".utf8))
        exit(128 + signo)
      }
      source.resume()
      return (signo, source)
    }
  }

  /// Marks every descriptor above stderr close-on-exec: the daemon must hold nothing of
  /// its starter's. An inherited one (a pipe, or the socket through which Foundation's
  /// `Process` in a parent learns that this command exited) would stay open as long as
  /// the daemon lives, and that parent would wait for it.
  static func closeOnExec() {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
    for name in names {
      guard let fd = Int32(name), fd > 2 else { continue }
      let flags = fcntl(fd, F_GETFD)
      if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }
  }

  /// glibc's POSIX_SPAWN_SETSID (<spawn.h>, a macro Swift does not import).
  static let spawnSetSID: Int32 = 0x80

  static func lastLine(of path: String) -> String? {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
    return text.split(separator: "\n").last.map(String.init)
  }
}
