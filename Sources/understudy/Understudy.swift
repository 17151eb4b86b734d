// The `understudy` command: parses, calls a procedure, prints.

import ArgumentParser

@main
struct Understudy: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "understudy",
    abstract: "Keeps a transaction-by-transaction backup of a SQLite database and runs its recovery procedures.",
    subcommands: [
      Demo.self, Init.self, Start.self, Stop.self, SQL.self, Query.self, Status.self, Wait.self, Events.self,
      Checksum.self, Verify.self, Trail.self, Bench.self, TakeoverCommand.self, RecoverCommand.self, FollowCommand.self,
      SwitchoverCommand.self, ResolveCommand.self, RTDRCommand.self, RTStart.self, RTStop.self, SCConfig.self,
      ScrtRA.self, RTMark.self,
      UpdaterCommand.self,
    ])
}
