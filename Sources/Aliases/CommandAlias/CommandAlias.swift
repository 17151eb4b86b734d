// Runs `understudy NAME ARGS…` in this process's place: the `understudy` binary beside
// this one (resolved through /proc/self/exe), so that `rtdr -C 1 failover` and
// `understudy rtdr -C 1 failover` are the same program.

#if canImport(Glibc)
  import Glibc
#endif

public func runUnderstudy(as name: String) -> Never {
  var path = [CChar](repeating: 0, count: 4096)
  let n = readlink("/proc/self/exe", &path, path.count - 1)
  var me = n > 0 ? String(cString: path) : CommandLine.arguments[0]
  if let slash = me.lastIndex(of: "/") { me = String(me[...slash]) } else { me = "./" }
  let understudy = me + "understudy"
  let arguments = [understudy, name] + CommandLine.arguments.dropFirst()
  var argv = arguments.map { strdup($0) } + [nil]
  execv(understudy, &argv)
  let message = "\(name): cannot run \(understudy): \(String(cString: strerror(errno)))\n"
  _ = message.withCString { write(2, $0, strlen($0)) }
  exit(127)
}
