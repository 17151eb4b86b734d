// The text of `rtdr -h` and `rtdr -m`: MIMIX's usage, and a manual page in our words.

enum RTDRManual {
  static let usage = """
    rtdr -C <ID> [-fhmnqv] failover | resync | failback
    rtdr -C <ID> -F <ID> [-s <hostname>] [-fhmnv] setup
       -C Context ID (of the "primary" context)
       -F Failover Context ID
       -f Forced execution (use with caution)
       -h Help, prints usage
       -m Man style help
       -n No execution, just print commands
       -q quiet, do not ask for confirmation
       -s Select failover site server from multiple recovery servers
          (default is first replication hop's server.)
          <hostname> must be a configured server name (init --name).
       -v Verbose output
       also: --home DIR (default $UNDERSTUDY_HOME, else /var/lib/understudy),
             --timeout SECONDS (default 300), --json
    Note: The "f" option prompts for confirmation unless combined with q.
    """

  static let page = """
    RTDR(1)                        Understudy                        RTDR(1)

    NAME
         rtdr - run the disaster-recovery cycle of a replication context

    SYNOPSIS
         rtdr -C <ID> -F <ID> [-s <hostname>] [-fhmnv] setup
         rtdr -C <ID> [-fhmnqv] failover | resync | failback

    DESCRIPTION
         A context (-C) is one replication setup: a production server whose
         database is protected, and one or more recovery servers holding a
         replica, kept transaction by transaction. Each server has a home
         directory (--home, or UNDERSTUDY_HOME, default /var/lib/understudy)
         listing its contexts; `understudy init primary|backup --context ID
         --name NAME` registers a node there. rtdr runs the cycle on top of
         Understudy's procedures, and prints what they found: the 888
         position, the transactions undone, generations and checksums.

    OPERATIONS
         setup     On both servers. Creates the failover context (-F): the
                   same data with the roles reversed, the recovery server
                   (-s, default the first replication hop) as its production.
                   Its ID is yours to choose, unused on both servers. Failover
                   needs it. Running setup again with the same IDs refreshes
                   it; another -F for the same context is refused.

         failover  On the recovery server, production lost. Takeover: every
                   whole transaction received is applied; events 735 (safe
                   position) and 888 (the MAT position production will be
                   recovered to) or 858 (no such position, and why). The
                   server then serves as production of the failover context;
                   the application runs here, every change is audited and is
                   shipped back at resync. Refused while production still
                   answers, unless -f. Run again, it reports the same.

         resync    On both servers, production revived and both live. On
                   production: file recovery to the 888 position (the undone
                   transactions listed in a lost-transactions report) and
                   follow the recovery server, or a full copy when the
                   takeover gave 858, the statemap is dirty or production's
                   database is gone - never silently: the output says which
                   and why. It ends "in sync" once production has applied all
                   the recovery server committed. On the recovery server it
                   makes sure the daemon serves and reports in sync once
                   production has caught up.

         failback  First on the recovery server, then on production: the
                   planned switchover. Writes stop on the recovery server,
                   production applies everything and becomes production
                   again; nothing is lost, no file recovery is needed, both
                   checksums are equal. Refused while production has not
                   caught up, unless -f (which waits for the drain, at most
                   --timeout seconds).

    OPTIONS
         -C <ID>   The context, a positive integer (always the primary
                   context, also after failover).
         -F <ID>   The failover context (setup only).
         -s <host> The recovery server to fail over to (setup only): a
                   server name given at init (--name); an unknown name is
                   refused with the list of names.
         -f        Forced: failover although production answers; failback
                   waiting for the drain. Still asks unless -q.
         -h        Print usage.
         -m        Print this page.
         -n        No execution: print the steps (the Understudy commands
                   with their arguments) and change nothing on either server.
         -q        Do not ask for confirmation. Without it, the operation
                   says what it will do and runs only after `yes`.
         -v        Verbose: each step and its result as it happens.
         --json    One JSON document: the steps, their results, positions,
                   events and checksums (Schemas/rtdr.schema.json).
         --timeout Seconds any wait may take (default 300).
         --home    The server's home.

    PROCEDURE
         1. rtdr -C X -F Y setup                 on both servers
         2. (snapshots of the replica to validate it: scrt_ra, not built yet)
         3. rtdr -C X failover                   on the recovery server
         4. rtdr -C X resync                     on both servers
            If production's data was lost, first on the acting production:
            rtstop -C X -F; scconfig -C X -M; rtstart -C X
            so that resync is a complete copy.
         5. rtdr -C X failback                   recovery server, then production

    NOTES
         Both servers must be live for resync and failback. Every step is
         journaled in the context's state (HOME/contexts/X.state.json): a
         step killed midway is finished by running the same command again,
         and another operation is refused until it is. Operations out of
         order (failback before resync, resync before failover) are refused
         with what to run instead, and change nothing.

         Several recovery servers: each fed by production (fan-out) or by
         another recovery server that relays what it received (a cascade:
         init backup --primary names the upstream server). setup finds
         them all; failover asks them first and refuses (without -f) when
         one received more than this server (RDF's triple contingency),
         then tells them to follow the new production, which each does by
         itself, without a copy, when it holds a prefix of what it holds.

    SEE ALSO
         rtstart(1), rtstop(1), scconfig(1), understudy takeover, recover,
         follow, switchover; Schemas/context-config.schema.json
    """
}
