/*
 * Ferry's handover and post-copy recovery, as a SPIN model.
 * docs/model/README.md says what it covers, what it abstracts away and
 * how to run it; every transition names the Go function it follows.
 *
 *   Src ── s2d (STATE, [HASHES,] COMMIT, PAGES, RESUME, ABORT, ABORT/SETTLED/BROKEN answers) ──► Dst
 *   Src ◄── d2s (LOADED, [VERIFIED, VBAD,] RUNNING, ABORT, TABORT, MISSING, SETTLED, BROKEN) ── Dst
 *           ([...]: the page check, compiled in with -DCHECK)
 *   Faults: connection breaks (each side notices on its own), lost
 *           messages in flight, crashes of either VMM, the destination's
 *           fault service failing (which cuts its sends of LOADED and
 *           VERIFIED), its Resume at COMMIT failing (post-copy),
 *           migrate-cancel on the destination, a
 *           cancel of the source's Send before its hold, a reconnect whose
 *           connection dies before its RESUME (a silent session), a fresh
 *           destination where the source's reconnect dials (its ABORT has no tag).
 *   Ops:    resume / quit on either VMM at any time, `migrate -resolve`
 *           at any time, the printed manual migrate-resolve resumes.
 *   Ctl:    the `migrate` that started the migration (follow, conclude,
 *           resolve, quitSource).
 *   Judge:  once nothing else can move, the operator's recovery
 *           (`migrate -resolve`, then the printed manual steps), then
 *           property (b).
 *
 * Mutants (compile with -DMUTANT=n) each reintroduce a known-bad
 * transition; the model must then fail to verify, on the property that
 * model_test.go names for it (README, "Properties": the table), which
 * the failed check's line marks ("property (a)" in a comment):
 *   1  the source resumes on its own when its wait for RUNNING fails
 *   2  plan resumes the source beside a destination that cannot be asked
 *   3  a resume from the control socket is not refused while a
 *      migration owns the VM (the racing resume that ran a guest twice)
 *   4  a post-copy destination answers a RESUME after COMMIT with ABORT
 *   5  migrate-resolve resume on a post-copy destination ignores
 *      lacksPages
 *   6  plan cancels a migrating destination beside a source that
 *      cannot be asked (the code before the fix in README, "Found")
 *   7  a post-copy destination whose stream broke after LOADED and
 *      before COMMIT answers the source's RESUME as after a break in
 *      post-copy (pcRecv.reconnect's MISSING, not uncommitted's ABORT):
 *      the source goes on in post-copy, the guest never runs there
 *   8  a pre-copy destination whose stream broke after LOADED gives the
 *      state up on its own (failed, exits) instead of staying
 *      handover-unknown: beside a source that died, the only copy
 *   9  a post-copy destination that no source reconnected to completes
 *      (runs on, says running) whether or not every page is here
 *      (completeWithout without its Pending() == 0)
 *  10  the source honours a cancel of Send after COMMIT went out as one
 *      before it: it resumes (no heldCtx, hold.go: the cancel ends the
 *      wait for RUNNING, in pre-copy and post-copy)
 *  11  a destination waiting for a RESUME reads a silent session until
 *      its own reconnect_timeout (acceptResume without receiver.first's
 *      bound): the source's next try never gets in
 *  12  a source whose reconnect try opened a silent session waits for
 *      MISSING until its reconnect_timeout (reopen without
 *      sender.answer's bound): it never tries again
 *  13  a pre-copy source holds only after it wrote COMMIT (held.hold()
 *      in commit, after SendMessage, not in switchOver before it): a
 *      cancel between the decision and the write resumes the VM and
 *      sends ABORT while COMMIT is on its way
 *  14  a pre-copy source that does not hold (the code before
 *      c565680): after LOADED it goes on to commit with a cancel, whose
 *      COMMIT write and wait for RUNNING end on it: handover-unknown
 *  15  migrate takes a migrating destination for failing (dstSide)
 *      while its handover is loaded, not failed: it resumes a
 *      handover-unknown source beside a destination that may still
 *      act on COMMIT
 *  16  the source takes any ABORT read after its RESUME for the answer
 *      (engine protocol 7, before resumeAbort): a post-copy source whose
 *      COMMIT went out resumes on a fresh destination's ABORT, though the
 *      destination that got COMMIT ran the guest (it died since, or runs
 *      it still where the source's dial no longer leads)
 * With the page check (-DCHECK; README, "The page check"):
 *  17  a destination that holds every page (pre-copy, or post-copy
 *      owing none) fails on a break while the check is open, as a
 *      post-copy one that lacks owed pages does (checkBroke without
 *      its Pending() > 0): mutant 8 inside the check's window
 *  18  the source writes COMMIT after its HASHES without waiting for
 *      VERIFIED (it reads the verdict after COMMIT, and ignores it)
 *  19  the source commits on a VERIFIED that counts differing pages
 *      (awaitVerified without checkFailed)
 *  20  the destination takes the check for open after it began to send
 *      VERIFIED (checkOpen true until COMMIT): on a break a post-copy one
 *      that lacks owed pages fails, one that holds every page ends
 *      handover-unknown without listening for a RESUME (uncommitted)
 *  21  a destination whose check found differing pages ends
 *      handover-unknown on a break after VERIFIED, as one whose check
 *      found none (checkBroke without check.bad > 0)
 *  23  a post-copy destination acts on COMMIT though an owed page landed
 *      differing before it (commitRefused without landedBad)
 *  24  a post-copy destination that refused COMMIT sends its ABORT once
 *      and ends (giveUp, the code before aef5da6): no tellAborted
 * Without the page check:
 *  22  a post-copy destination whose LOADED did not get out ends
 *      handover-unknown at once, without listening for the RESUME of a
 *      source that read it and committed (the code before 2026-12-07's
 *      lostAfterLoaded)
 *  25  a post-copy destination that never got COMMIT answers the
 *      source's RESUME with its ABORT once and ends (uncommitted before
 *      fba64a3): no wait for the source's answer, no lingerToTell
 *  26  a post-copy destination whose fault service failed after LOADED,
 *      the check not open, sends its ABORT once and ends (setupFailed's
 *      giveUp, before af0ad13)
 *  27  a post-copy destination whose fault service failed before COMMIT
 *      came sends its ABORT once at COMMIT and ends (failedEarly's
 *      giveUp, before 0dbff91)
 *  28  a post-copy destination whose Resume at COMMIT failed sends its
 *      ABORT once and ends (before 0dbff91)
 * With the page check, post-copy:
 *  29  a VERIFIED whose send the fault service's failure cut goes to
 *      uncommitted under the cut context, whose listening ends at once:
 *      handover-unknown, no ABORT (before c4fb038)
 * Either:
 *  Mutants 18 and 19 take the destination's COMMIT guard out too
 *  (GUARD, below): with it a COMMIT after VBAD is refused, and they
 *  would show only that the guard hides the source's bug.
 */

#ifndef MUTANT
#define MUTANT 0
#endif
#if MUTANT >= 17 && MUTANT <= 21 && !defined(CHECK)
#error mutants 17 to 21 are of the page check: compile with -DCHECK
#endif
#if (MUTANT == 23 || MUTANT == 24) && !defined(CHECK)
#error mutants 23 and 24 are of the refused COMMIT, which needs the page check: compile with -DCHECK
#endif
/* pcRecv.uncommitted's listening and telling end on a cancel (r.held);
 * before 2026-12-08 they ran under the receive loop's context, which
 * the fault service's failure cuts too (watchSetup), and it ended
 * handover-unknown without a RESUME, whatever ended the listening:
 * mutant 30, and 29 as the code before c4fb038 came there */
#if MUTANT == 29 || MUTANT == 30
#define UNCOMMITTED_STOP (d_cancel || d_pcfail)
#else
#define UNCOMMITTED_STOP d_cancel
#endif
#if MUTANT == 30 && defined(CHECK)
#error mutant 30 is of the model without the page check
#endif
#if MUTANT == 29 && !defined(CHECK)
#error mutant 29 is of the page check: compile with -DCHECK
#endif
#if (MUTANT == 22 || MUTANT == 25) && defined(CHECK)
#error mutants 22 and 25 are of the model without the page check (its source promises it there)
#endif
/* The destination's COMMIT guard (receiver.commitRefused): in the model
 * but for mutants 18 and 19, which show the source's own rule needed by
 * itself (README, "The page check"); -DGUARD=1 puts it back for them. */
#ifndef GUARD
#if MUTANT == 18 || MUTANT == 19
#define GUARD 0
#else
#define GUARD 1
#endif
#endif

/* Handover (framework/engine/handover.go: Handover, handoverNext). */
#define H_LIVE        1
#define H_SWITCHOVER  2
#define H_COMMITTING  3
#define H_COMPLETED   4
#define H_FAILED      5
#define H_WAITING     6
#define H_RECEIVING   7
#define H_LOADED      8
#define H_RUNNING     9
#define H_UNKNOWN    10
#define H_POSTCOPY   11
#define H_PCBROKEN   12

/* VM states (vmm/lifecycle.go: State, stateNext). */
#define V_RUNNING    1
#define V_PAUSED     2
#define V_STOPPED    3
#define V_INCOMING   4
#define V_MIGRATED   5
#define V_HUNKNOWN   6
#define V_DISCARDED  7
#define V_PCBROKEN   8

/* Sides (vmm/api Side; sideUnreachable in cmd/migrate/resolveplan.go). */
#define SD_MIGRATING  1
#define SD_RUNNING    2
#define SD_UNKNOWN    3
#define SD_MIGRATED   4
#define SD_DISCARDED  5
#define SD_FAILED     6
#define SD_PCBROKEN   7
#define SD_UNREACH    8
#define SD_FAILING    9   /* cmd/migrate sideFailing: migrating, handover failed (dstSide) */

/* plan's verdicts (cmd/migrate/resolveplan.go: verdict). */
#define VD_WAIT       1
#define VD_SOURCE     2
#define VD_MOVED      3
#define VD_MANUAL     4
#define VD_BOTHRUN    5
#define VD_CANCELDST  6
#define VD_IDLE       7
#define VD_LOST       8

/* plan's steps (cmd/migrate/resolveplan.go: step). */
#define A_NONE          0
#define A_DST_DISCARD   1
#define A_SRC_RESUME    2
#define A_DST_QUIT      3
#define A_SRC_MIGRATED  4
#define A_DST_RESUME    5

/* Engine messages (framework/engine/messages.go). PAGES stands for the
 * owed pages the source pushes in post-copy (the transport's pages,
 * not a message): it travels on the same connection and dies with it.
 * TABORT is the ABORT that answers a RESUME: it carries that RESUME's
 * tag (protocol 8, encodeResumeAbort), the bit resumeAbort reads; ABORT
 * carries none (giveUp's, waitAgain's, the source's). The bit is the
 * message's kind here so that the channels stay one field wide. */
mtype = { STATE, LOADED, COMMIT, RUNNING, ABORT, TABORT, PAGES, SETTLED, BROKEN, RESUME, MISSING };
#ifdef CHECK
/* The page check (-DCHECK; verify.go): HASHES stands for every chunk
 * of the source's hashes (the window is the same before the first and
 * between two, the check promised in HELLO: helloCheck), VERIFIED for
 * a verdict that counts no differing page, VBAD for one that counts
 * some (again the verdict is the message's kind). Declared only with
 * the check, so that the runs without it keep their state counts. */
mtype = { HASHES, VERIFIED, VBAD };
#endif

chan s2d = [2] of { mtype };
chan d2s = [2] of { mtype };

byte s_ho = H_LIVE, d_ho = H_WAITING;
byte s_vm = V_RUNNING, d_vm = V_INCOMING;
byte s_side = SD_MIGRATING, d_side = SD_MIGRATING;
bit s_own = 1, d_own = 1;   /* the migration owns the VM's run state (vmm/runlock.go: claim .. release) */
bit s_done, d_done;         /* the engine returned and endMigration published the side */
bit s_dead, d_dead;         /* the VMM process is gone (crash, quit, a failed destination's exit) */
bit s_crash, d_crash;       /* ... by a fault or an operator's kill, not by the protocol */
bit up = 1;                 /* the current connection carries bytes */
bit d_listen;               /* the destination waits for a RESUME (pcRecv.acceptResume) */
bit pc;                     /* the source switched to post-copy (sender.switchToPostcopy) */
bit d_pc;                   /* the destination took the POSTCOPY list (report Mode postcopy) */
bit d_full;                 /* the destination holds every page of the current guest */
bit d_ran;                  /* ghost: the destination's vCPUs ran the guest */
bit d_acted;                /* ghost: the destination acted on COMMIT (ran, or may still) */
bit d_cancel;               /* the destination's migration was cancelled (migrate-cancel, its SIGTERM) */
bit d_held;                 /* the destination's heldCtx is held: a cancel is ignored (engine/hold.go) */
bit d_pcfail;               /* fault: the destination's fault service failed */
bit d_resfail;              /* fault: the post-copy destination's Resume at COMMIT failed (held: a cancel is refused) */
bit d_guess;                /* ghost: migrate gave the destination up (cancel, discard) on a plan made without the source */
bit d_word;                 /* ghost: the destination gave the guest up on the source's word (its ABORT, its RESUME before COMMIT) */
bit s_resumed;              /* ghost: the source's VM ran again after the pause */
bit d_opcancel;             /* ghost: an operator (not migrate's resolver) cancelled the destination */
bit d_broke;                /* ghost: post-copy broke for good on the destination after the guest ran */
#ifdef CHECK
bit d_bad;                  /* ghost: the destination's page check found pages that differ from the source's (a transport's or hint provider's bug) */
#define BADCOPY d_bad
#else
#define BADCOPY 0
#endif
bit s_dial;                 /* the source is in its post-copy reconnect (pcSend.reconnect) */
bit s_cancel;               /* fault: Send's context was cancelled (migrate-cancel on the source, migrate's Ctrl-C: migration.cancelRunning) */
bit s_held;                 /* the source's heldCtx is held: a cancel is ignored (engine/hold.go; either mode, from the decision to write COMMIT) */
bit d_silent;               /* the destination reads a session whose source lost it before its first message (half-open) */
#ifndef SILENT
#define SILENT 1
#endif
byte silent = SILENT;       /* silent sessions the faults may still cause (a reconnect's connection dying before RESUME) */
#ifndef FRESH
#define FRESH 1             /* -DFRESH=0: no fresh destination where the source's reconnect dials (reconnect) */
#endif
#ifndef ELSEWHERE
#define ELSEWHERE 1
#endif
byte elsewhere;             /* tries of recommit's reconnect that may still meet a fresh destination while the destination of this migration lives */
#ifndef BREAKS
#define BREAKS 2
#endif
byte breaks = BREAKS;       /* connection breaks the faults may still cause */

#define S_RUNS (s_vm == V_RUNNING && !s_dead)
#define D_RUNS (d_vm == V_RUNNING && !d_dead)
/* a fault of a process happened (Faults: at most one per run; migrate's
 * resolver's cancel counts as one) */
#define FAULT (s_crash || d_crash || d_pcfail || d_resfail || d_cancel || s_cancel)
/* what excuses a post-copy source's handover-unknown in property (j):
 * a kill or a cancel, never a failure the destination can tell (its
 * fault service, its Resume: it tells its ABORT and lingers). */
#define J_EXCUSED (s_crash || d_crash || d_cancel || s_cancel)

/* Property (a): never two running copies. Checked where a copy starts
 * to run, and as an LTL invariant (p_two). */
ltl p_two { [] !(S_RUNS && D_RUNS) }    /* property (a) */

/* The source's VM runs again. own: the engine's own resume (property
 * (c): never once the destination may have acted on COMMIT); every
 * resume: never beside a running destination (a), never after the
 * destination ran the guest (its copy is older: (d) for post-copy, and
 * the manual instructions' "the guest never ran there" for pre-copy).
 * -DNO_CD leaves (c) and (d) out, so that a mutant's run shows that
 * another property catches it too (model_test.go: mutant 16 and (a)).
 * (c) cannot fail first: d_acted is set only with d_ran (dst_runs at
 * COMMIT), so where (c) fails (d) failed just before (README,
 * "Properties"); -DNO_AD leaves (a) and (d) out here (the never claim
 * and dst_runs keep (a)), so that a run shows that (c) alone catches a
 * source that resumes on its own after COMMIT (model_test.go: mutant 1
 * and (c)). */
inline src_runs(own) {
#ifndef NO_AD
	assert(!D_RUNS);             /* property (a) */
#endif
#ifndef NO_CD
#ifndef NO_AD
	assert(!d_ran);              /* property (d) */
#endif
	assert(!own || !d_acted);    /* property (c) */
#endif
	s_vm = V_RUNNING;
	s_resumed = 1; d_full = 0   /* whatever the destination holds is older from now on */
}

inline dst_runs() {
	assert(!S_RUNS);             /* property (a) */
#ifdef CHECK
	assert(!d_bad);              /* property (i) */
#endif
	d_vm = V_RUNNING;
	d_ran = 1
}

/* ---- the connection ---------------------------------------------------- */

/* send m on ch: delivered, delivered but reported failed (a write that
 * hit its deadline after the bytes left), or lost on a broken connection.
 * Each branch is one step: its guard and its effect must not let another
 * process in between, or a message checked against one connection lands
 * on the next (fresh), and two sides that both saw breaks == 1 spend it
 * twice: the byte wraps to 255 and the search no longer ends (it did:
 * post-copy with one break went past 34 M states and a depth of 35 000). */
inline send(ch, m, ok) {
	if
	:: atomic { up && nfull(ch) -> ch!m; ok = 1 }
	:: atomic { up && nfull(ch) && breaks > 0 -> ch!m; ok = 0; breaks-- }
	:: atomic { !up -> ok = 0 }
	fi
}

/* the reader's next message: one that arrived, or the end of the
 * connection seen (got 0): a break (an RST drops what is buffered), or
 * its own deadline passing on a connection that is up (a slow or
 * stalled peer: it costs a break, which bounds the model). Spending a
 * break is one step with its guard, as in send. */
inline recv(ch, m, got) {
	if
	:: ch?m -> got = 1
	:: !up -> got = 0
	:: atomic { up && breaks > 0 -> breaks--; got = 0 }
	fi
}

/* the source's wait in its handover (for LOADED, for RUNNING): recv,
 * or Send's context ends (next: ctx.Done, which Go's select may take
 * over a message that arrived too). Send holds before COMMIT in either
 * mode (s_held), so a cancel never ends a wait after it (only the
 * mutants 10, 13 and 14 let one in there). */
inline srecv(m, got) {
	if
	:: d2s?m -> got = 1
	:: !up -> got = 0
	:: atomic { up && breaks > 0 -> breaks--; got = 0 }
	:: s_cancel -> got = 0
	fi
}

/* a deadline passes, or the end was seen, without a message */
#define GIVEUP (!up || breaks > 0)
inline giveup() {
	if :: up -> breaks-- :: else fi
}

/* A side closes its end (the transport's Close): the peer reads what
 * is buffered, then the end. */
inline hangup() { up = 0 }

/* A new connection (transport.Open on both sides, post-copy reconnect):
 * nothing of the old one arrives on it. */
inline fresh() {
	do
	:: s2d?_
	:: d2s?_
	:: empty(s2d) && empty(d2s) -> break
	od;
	up = 1
}

/* ---- the source VMM ---------------------------------------------------- */

/* sender.recommit / pcSend.reconnect: the post-copy source reopens the
 * transport and sends RESUME, until it gives up (reconnect_timeout).
 * out: 1 post-copy goes on (MISSING), 2 SETTLED came, 3 the ABORT that
 * answers this RESUME came (TABORT; answered with an empty ABORT, which
 * the destination's tellAborted waits for), 4 BROKEN came, 0 gave up.
 *
 * What bounds the tries: the code retries with a backoff until
 * reconnect_timeout after the break (pcSend.reconnect: rctx), and the
 * destination listens as long (pcRecv.reconnect, uncommitted: deadline);
 * a reconnect that worked starts the clock again, so the code has no
 * bound on the number of rounds but the network's breaks. Here a try
 * that fails on a connection that is up spends a break (giveup), one on
 * a connection the destination closed is the destination moving on (it
 * listens again or ends), so BREAKS bounds the rounds as the network
 * does: measured, at most BREAKS + 1 RESUMEs per run.
 *
 * The answer to RESUME is MISSING, SETTLED, TABORT or BROKEN: the
 * destination answers a RESUME only from acceptResume's callers
 * (pcRecv.resume, uncommitted, lingerToTell), and it sends RUNNING and
 * LOADED only from receiver.loop (commit, stateChunk), on the session
 * that carried COMMIT or STATE, never on a reopened one; a reopened
 * session carries nothing of the one before (the transport's Close
 * ends a session; fresh here). Until 2026-12-06 the model also took
 * RUNNING and LOADED here and tried again: no run ever reached them
 * (an assert(false) in their place held, post-copy with 1 and 2
 * breaks), and the code would not try again: reopen takes any other
 * kind for a malformed answer, final (pc.broken).
 *
 * A silent session: the try opens the transport, then its connection
 * dies with or before RESUME, unseen by either side (a half-open TCP
 * connection stays up until keepalive notices, minutes later). The
 * source's write fails, or its wait for MISSING ends after
 * switchover_timeout (sender.answer), and it tries again; the
 * destination, which opens one session at a time, takes the next try
 * only once it dropped that one (receiver.first: no first message within
 * switchover_timeout; listen). SILENT bounds them, apart from BREAKS.
 *
 * A fresh destination at the same address: another destination VMM,
 * started anew, listens where the source dials; its transport lets the
 * source in (it does not enforce the migration tag, or the source holds
 * credentials it accepts). The destination VMM of this migration may be
 * gone (d_dead: killed, perhaps after it ran the guest on COMMIT and
 * before RUNNING went out; or it exited, or was quit), or live on: once
 * its Receive returned it lets its port go (Close), and the address may
 * lead elsewhere by then (a floating IP, a name resolved again at each
 * dial, NAT), or its transport may not hold its port between sessions
 * (transport.ListenerHolder is optional). So a try may meet a fresh
 * destination whatever the destination of this migration does: any
 * try once it is dead, and while it lives ELSEWHERE tries of
 * recommit's reconnect, the one where an ABORT taken for the answer
 * resumes the source (after RUNNING it is final either way: broken).
 * That is a bound, as SILENT is: unbounded, such tries turn a source
 * stuck in its reconnect into a cycle that the search does not report
 * (mutant 11 verified), and a count kept over the whole run cost 60 %
 * more states with one break. While the destination runs its Receive
 * on the host the address leads to it holds the port (transport.Listen),
 * and the model's try may still go elsewhere: more than the code can
 * meet, not less. The fresh destination waits for a HELLO
 * (receiver.first, waiting): the RESUME
 * reaches it after its bound, so it closes the session as silent with
 * an ABORT that carries no tag (waitAgain, silentReason), or it reads
 * the RESUME and closes the session without an answer
 * (errForeignResume: the source reads the end). It never runs a guest
 * and knows nothing of this migration, so nothing else here changes: it
 * is one atomic step in the source's try (the RESUME it never read is
 * lost with the session), and takes each next try alike (waitAgain,
 * within its incoming_timeout). Since protocol 8 (reopen: resumeAbort,
 * errAbortNotAnswer) such an ABORT is a failed try, and the next one
 * dials again until the source gives up (below): Committing, it ends
 * handover-unknown; in post-copy, postcopy-broken. A try against it
 * spends no break: it leaves the model as the try found it (but for
 * elsewhere), a cycle that needs no bound once the destination is dead
 * (the source may give up there); the step drops what the source's
 * closed session still held in flight, as a loss (Faults) may. Before
 * protocol 8 the source took any ABORT after its RESUME for the answer (mutant 16):
 * Committing, it resumed its copy (recommit), which property (d)
 * refuses when the destination that got COMMIT ran the guest, and (a)
 * when it runs it still (its RUNNING lost, it waits for a RESUME that
 * went elsewhere). Until 2026-12-07's review the step needed d_dead,
 * and the model could not show (a) there. */
inline reconnect(out) {
	hangup();                       /* closeTransport */
	s_dial = 1;
	do
	:: if
		:: atomic { d_listen && !d_dead && !d_silent -> fresh(); s2d!RESUME }   /* reopen */
		:: atomic { FRESH && (d_dead || elsewhere > 0) ->   /* reopen, to a fresh destination at the address (above) */
			if :: !d_dead -> elsewhere-- :: else fi; fresh(); d2s!ABORT; hangup() }
		fi;
		if
		:: d2s?MISSING -> out = 1; break
		:: d2s?SETTLED -> out = 2; break                  /* reopen: SETTLED as the answer */
		:: d2s?TABORT -> send(s2d, ABORT, ok); out = 3; break   /* reopen: resumeAbort, the answer (its tag); pc.answer(msgAbort): heard */
#if MUTANT == 16
		:: d2s?ABORT -> out = 3; break                    /* protocol 7: any ABORT after RESUME is the answer */
#else
		:: atomic { d2s?ABORT -> hangup() }               /* errAbortNotAnswer: failed try; next try */
#endif
		:: d2s?BROKEN -> send(s2d, BROKEN, ok); out = 4; break   /* reopen: pc.answer(msgBroken) */
		:: atomic { GIVEUP -> giveup(); hangup() }   /* failed try: waiting for MISSING; next try */
		fi
	:: atomic { d_listen && !d_dead && !d_silent && silent > 0 ->     /* reopen: a silent session */
		fresh(); hangup(); silent--; d_silent = 1 }
#if MUTANT == 12
		(0)                             /* the wait for MISSING outlasts everything else (reconnect_timeout) */
#endif
	/* reconnect_timeout: only when no destination can take the reconnect
	 * any more (a timing assumption: both sides keep trying for much
	 * longer than the other needs to notice a break). */
	:: atomic { d_dead || d_done -> out = 0; break }
	od;
	s_dial = 0
}

/* pcSend.broken: post-copy ends for good here; Committing (RUNNING never
 * came, nobody took the reconnect) is handover-unknown. */
inline src_broken(heard_broken) {
	if
	:: heard_broken && s_ho == H_COMMITTING -> s_ho = H_POSTCOPY
	:: else -> skip
	fi;
	if
	:: s_ho == H_COMMITTING -> s_ho = H_UNKNOWN          /* sender.unknown */
	:: else -> s_ho = H_PCBROKEN
	fi
}

proctype Src() {
	mtype m; bit got, ok; byte out;
	{
	/* sender.live: the pre-copy passes; any failure (a cut, a cancel,
	 * the destination's ABORT) ends it with the VM running here, and
	 * Send's deferred abort tells the destination. */
	if
	:: s_ho = H_FAILED; send(s2d, ABORT, ok); goto sdone
	:: skip
	fi;
	/* sender.run: switchOver or, after postcopyWhy, switchToPostcopy
	 * (-DPC=0: pre-copy only, -DPC=1: post-copy only) */
#if !defined(PC) || PC == 1
	if
	:: pc = 1
#if !defined(PC)
	:: skip
#endif
	fi;
#endif
	atomic { s_ho = H_SWITCHOVER; s_vm = V_PAUSED };          /* pauseAndSend: Pause */
	/* toDestination (sendState) or postcopyOut (sendAbsent, sendState) */
	send(s2d, STATE, ok);
	if
	:: ok -> srecv(m, got)                                      /* sendState: await LOADED */
	:: else -> got = 0
	fi;
	if
	:: got && m == LOADED -> skip
	:: else ->
		/* switchOver / switchToPostcopy: any failure before COMMIT (an
		 * error, ABORT, the deadline, a cancel) resumes the VM; Send's
		 * deferred abort sends ABORT (state switchover). */
		atomic { src_runs(1); s_ho = H_FAILED };
		send(s2d, ABORT, ok);
		goto sdone
	fi;
#ifdef CHECK
	/* sender.pageCheck (VerifyPages; HELLO said so: helloCheck):
	 * sendHashes, then awaitVerified. COMMIT only after a VERIFIED that
	 * counts no differing page; anything else (the HASHES send failing,
	 * a break, no VERIFIED within verifyWait, a verdict of differing
	 * pages: checkFailed, the destination's ABORT, a cancel) resumes the
	 * VM, and Send's deferred abort sends ABORT; no reconnect (recommit
	 * follows only COMMIT). */
	send(s2d, HASHES, ok);
#if MUTANT != 18
	if
	:: ok -> srecv(m, got)
	:: else -> got = 0
	fi;
	if
#if MUTANT == 19
	:: got && (m == VERIFIED || m == VBAD) -> skip           /* any verdict taken for clean */
#else
	:: got && m == VERIFIED -> skip
#endif
	:: else -> atomic { src_runs(1); s_ho = H_FAILED }; send(s2d, ABORT, ok); goto sdone
	fi;
#endif
#endif
	/* After LOADED, the decision to write COMMIT: held.hold()
	 * (switchOver, switchToPostcopy) fails on a cancel that came
	 * before it, in the page check (VerifyPages) or after: the VM
	 * resumes, ABORT goes out. hold looks at the parent's cancel itself,
	 * under its lock, so the cancel is either before it (here) or after
	 * it, ignored (Faults: not an event). From here on either mode
	 * holds. Until 2026-12-06 a pre-copy source without the page check
	 * went on to commit with the cancel, whose COMMIT write and wait for
	 * RUNNING then ended on it: handover-unknown (mutant 14). */
	if
	:: atomic { s_cancel -> src_runs(1); s_ho = H_FAILED }; send(s2d, ABORT, ok); goto sdone
#if MUTANT == 10
	:: atomic { !s_cancel -> skip }                             /* no heldCtx: a cancel is honoured after COMMIT too */
#elif MUTANT == 13
	:: atomic { !s_cancel -> s_held = pc }                      /* pre-copy: no hold yet (below) */
#elif MUTANT == 14
	:: atomic { !pc || !s_cancel -> s_held = pc }               /* pre-copy: no hold, a cancel or not */
#else
	:: atomic { !s_cancel -> s_held = 1 }                       /* held.hold() */
#endif
	fi;
	/* sender.commit */
	s_ho = H_COMMITTING;
#if MUTANT == 14
	if
	:: !pc && s_cancel -> ok = 0      /* SendMessage(cctx) fails on the cancel before a byte went out */
	:: true -> send(s2d, COMMIT, ok)
	fi;
#else
	send(s2d, COMMIT, ok);
#endif
#if MUTANT == 13
	/* held.hold() after the COMMIT write: a cancel since the decision
	 * resumes and sends ABORT, though COMMIT went out */
	if
	:: atomic { !pc && s_cancel -> src_runs(1); s_ho = H_FAILED }; send(s2d, ABORT, ok); goto sdone
	:: atomic { pc || !s_cancel -> s_held = 1 }
	fi;
#endif
	if
	:: ok -> srecv(m, got)                                       /* next(cctx) */
#if MUTANT == 18
		if :: got && (m == VERIFIED || m == VBAD) -> srecv(m, got) :: else fi   /* the verdict, after COMMIT: ignored */
#endif
	:: else -> srecv(m, got);                                    /* answeredBefore */
		if
		:: got && (m == ABORT || m == RUNNING || (m == BROKEN && pc)) -> skip
		:: else -> got = 0
		fi
	fi;
	if
	:: got && m == RUNNING && !pc -> s_ho = H_COMPLETED; goto sdone
	:: got && m == RUNNING && pc -> s_ho = H_POSTCOPY
	:: got && m == ABORT ->
		atomic { src_runs(1); s_ho = H_FAILED };
		/* sender.commit, post-copy: pc.answer(msgAbort) after the
		 * resume, on the session that carried COMMIT: a destination that
		 * refused COMMIT waits for it (pcRecv.tellAborted), else
		 * listens for a RESUME. A source from before 2026-12-07 answers
		 * nothing (the second branch): that destination lingers in vain
		 * until no source can come (lingerToTell's bound). */
		if
		:: pc -> send(s2d, ABORT, ok)
		:: pc -> skip
		:: else
		fi;
		goto sdone
	:: got && m == BROKEN && pc -> src_broken(1); goto sdone     /* pc.broken */
	:: else ->
#if MUTANT == 1
		atomic { src_runs(1); s_ho = H_FAILED }; goto sdone
#endif
#if MUTANT == 10
		if
		:: s_cancel -> atomic { src_runs(1); s_ho = H_FAILED }; send(s2d, ABORT, ok); goto sdone
		:: else -> skip
		fi;
#endif
		if
		:: !pc -> s_ho = H_UNKNOWN; goto sdone                     /* sender.unknown */
		:: pc ->                                                   /* sender.recommit */
#if FRESH && ELSEWHERE
			elsewhere = ELSEWHERE;
			reconnect(out);
			elsewhere = 0;
#else
			reconnect(out);
#endif
			if
			:: out == 3 -> atomic { src_runs(1); s_ho = H_FAILED }; goto sdone
			:: out == 4 -> src_broken(1); goto sdone
			:: out == 0 -> src_broken(0); goto sdone
			:: out == 1 || out == 2 -> s_ho = H_POSTCOPY
			fi
		fi
	fi;
	/* pcSend.run: push the owed pages, settle, reconnect after a break */
	if
	:: out == 2 -> goto settled
	:: else -> skip
	fi;
push:
	send(s2d, PAGES, ok);                                       /* pcSend.push */
	if
	:: !ok -> goto broke                                        /* pushFailed: linkError */
	:: else -> skip
	fi;
	recv(d2s, m, got);                                          /* pcSend.settle */
	if
	:: got && m == SETTLED -> goto settled
	:: got && m == BROKEN -> send(s2d, BROKEN, ok); src_broken(1); goto sdone
	:: got && m != SETTLED && m != BROKEN -> src_broken(0); goto sdone   /* unexpected: not a link error */
	:: !got -> goto broke
	fi;
broke:
	/* pcSend.lastWord: a BROKEN still buffered decides */
	if
	:: d2s?BROKEN -> src_broken(1); goto sdone
	:: skip
	fi;
	reconnect(out);
	if
	:: out == 1 -> goto push
	:: out == 2 -> goto settled
	:: out == 3 -> src_broken(0); goto sdone                    /* TABORT after RUNNING: final, broken */
	:: out == 4 -> src_broken(1); goto sdone
	:: out == 0 -> src_broken(0); goto sdone
	fi;
settled:
	send(s2d, SETTLED, ok);                                     /* pc.answer(msgSettled) */
	s_ho = H_COMPLETED;
sdone:
	/* endMigration: sideAfter, migrationDone and release, one step
	 * under the run lock. */
	atomic {
		hangup();
		if
		:: s_ho == H_COMPLETED -> s_side = SD_MIGRATED; if :: s_vm == V_PAUSED -> s_vm = V_MIGRATED :: else fi
		:: s_ho == H_UNKNOWN -> s_side = SD_UNKNOWN; if :: s_vm == V_PAUSED -> s_vm = V_HUNKNOWN :: else fi
		:: s_ho == H_PCBROKEN -> s_side = SD_PCBROKEN; if :: s_vm == V_PAUSED -> s_vm = V_PCBROKEN :: else fi
		:: s_ho == H_FAILED -> s_side = SD_RUNNING
		fi;
		/* property (h): a cancel never leaves the source handover-unknown:
		 * it takes effect before the hold (resumed, ABORT) or is ignored */
		assert(!s_cancel || s_ho != H_UNKNOWN);    /* property (h) */
		/* property (j): a post-copy source ends handover-unknown only
		 * after a kill or a cancel (J_EXCUSED; until 2026-12-08 any
		 * fault, the destination's fault service too): a destination
		 * that never got COMMIT, refused it, or will not act on it (its
		 * fault service failed, its Resume failed) tells it so on the
		 * session or to its RESUME (uncommitted, abortCommit:
		 * tellAborted), one that ran the guest answers its
		 * RESUME (MISSING, SETTLED, BROKEN); breaks alone never leave it
		 * unknown (the model's reconnect_timeout outlasts the other side,
		 * "reconnect" above, so this checks the protocol, not time) */
		assert(!pc || s_ho != H_UNKNOWN || J_EXCUSED);    /* property (j) */
		s_own = 0; s_done = 1
	}
	} unless { s_dead }
}

/* ---- the destination VMM ---------------------------------------------- */

/* pcRecv.acceptResume in a listening loop; got 1 when a RESUME came,
 * 0 when it gave up (only once no source can come: s_dead or s_done,
 * the timing assumption of reconnect above; or stop: the context that
 * ends the listening ended, for uncommitted and tellAborted a cancel). A silent session (reconnect
 * above) is dropped once switchover_timeout passed without its first
 * message (receiver.first: errSilentSession), and the loop opens the
 * transport again (pcRecv.reconnect, uncommitted, lingerToTell: their
 * next try). */
inline listen(got, stop) {
	hangup();                                                   /* closeSession */
	d_listen = 1;
	do
	:: atomic { s2d?RESUME -> d_listen = 0; got = 1; break }
#if MUTANT != 11
	:: atomic { d_silent -> d_silent = 0 }                      /* first: errSilentSession, closeSession, next try */
#endif
	:: atomic { s_dead || s_done || stop -> d_listen = 0; d_silent = 0; got = 0; break }
	od
}

/* awaitSourceClose(ctx, kind): heard 1 when the source's answer in
 * kind came; other messages are ignored; the session's end, its
 * deadline (settledLinger: a break) or stop (ctx ended) end it unheard. */
inline await_answer(kind, heard, stop) {
	heard = 0;
	do
	:: stop -> break
	:: recv(s2d, m, heard);
		if
		:: heard && m == kind -> break
		:: heard && m != kind -> heard = 0          /* ignored */
		:: !heard -> break
		fi
	od
}

/* pcRecv.lingerToTell: each RESUME of this migration is answered with
 * last and the source's answer in kind waited for (tellOnce), until one
 * comes, or no source can come any more (listen: the code's window,
 * brokenLinger beyond lingerNotice, counted again from each RESUME
 * answered in vain, and reconnect_timeout, which the model takes to
 * outlast the source, as everywhere), or stop ends the listening (the
 * caller's ctx). Until 2026-12-08 the model answered one RESUME and
 * ended (README, property (j)). */
inline linger_to_tell(last, kind, stop) {
	got = 0;
	do
	:: got -> break
	:: !got ->
		listen(got, stop);
		if
		:: !got -> break
		:: got -> send(d2s, last, ok);
			if :: ok -> await_answer(kind, got, stop) :: else -> got = 0 fi
		fi
	od
}

/* pcRecv.tellAborted (uncommitted, refuseCommit): first goes out
 * whatever a cancel (context.WithoutCancel; ABORT, the answer to
 * COMMIT, or TABORT, the answer to a RESUME), then the wait for the
 * source's empty ABORT; unheard, lingerToTell answers each RESUME with
 * TABORT (encodeResumeAbort). A cancel (Receive's ctx) ends the waits. */
inline tell_aborted(first, stop) {
	send(d2s, first, ok);
	if :: ok -> await_answer(ABORT, got, stop) :: else -> got = 0 fi;
	if
	:: got -> skip
	:: else -> linger_to_tell(TABORT, ABORT, stop)
	fi
}

/* the destination's send that the fault service's failure may cut
 * (watchSetup cancels the receive loop's context, which LOADED's and
 * VERIFIED's sends run under): send, or cut with its bytes gone out
 * (the source may read it) or not; a cut spends no break (it is the
 * fault's, not the network's). */
inline dsend(m, ok) {
	if
	:: send(d2s, m, ok)
	:: atomic { d_pcfail && up && nfull(d2s) -> d2s!m; ok = 0 }
	:: atomic { d_pcfail -> ok = 0 }
	fi
}

/* pcRecv.broken: halt FIRST, then tell the source (tellBroken, or
 * lingerToTell): BROKEN on the session, else to a RESUME. */
inline dst_broken(tell) {
	atomic { d_vm = V_STOPPED; d_ho = H_PCBROKEN; d_broke = 1 };
	if
	:: tell ->
		send(d2s, BROKEN, ok);
		if
		:: ok -> recv(s2d, m, got)                              /* awaitSourceClose */
		:: else -> got = 0
		fi;
		if
		:: got && m == BROKEN -> skip
		:: else -> linger_to_tell(BROKEN, BROKEN, 0)          /* lingerToTell */
		fi
	:: else -> skip
	fi
}

proctype Dst() {
	mtype m; bit got, ok;
	{
	/* receiver.loop in waiting/receiving: HELLO, READY and the pages
	 * are abstracted; STATE (after POSTCOPY in post-copy) completes. */
	recv(s2d, m, got);
	if
	:: got && m == STATE -> skip
	:: got && m == ABORT -> d_word = 1; d_ho = H_FAILED; goto ddone
	:: else -> d_ho = H_FAILED; goto ddone     /* a cut, incoming_timeout: giveUp */
	fi;
	/* receiver.stateChunk: LoadState; a cancel first fails it (giveUp: ABORT) */
	if
	:: d_cancel -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone
	:: else -> skip
	fi;
	atomic {
		d_ho = H_LOADED; d_vm = V_PAUSED; d_pc = pc;
		if                              /* (a state the source ran on after it sent it is older) */
		:: !pc -> d_full = !s_resumed
		:: pc -> skip                   /* owed pages are absent here ... */
		:: pc -> d_full = !s_resumed    /* ... unless none was owed */
		fi
	};
	dsend(LOADED, ok);
	/* send LOADED failed: lostAfterLoaded, as a break after LOADED; but
	 * a fault service that failed meanwhile decides first (its cut, or
	 * any failure seen after it: setupFailed) */
	if
#ifdef CHECK
	/* setupFailed with the check open (promised in HELLO): no COMMIT
	 * can have been written: giveUp's ABORT, once */
	:: !ok && d_pcfail -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone
	/* checkBroke: post-copy, pages owed, the check promised (HELLO):
	 * no COMMIT before VERIFIED: failed, never runs (giveUp: ABORT) */
	:: !ok && !d_pcfail && d_pc && !d_full -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone
	:: !ok && !d_pcfail && !(d_pc && !d_full) -> d_ho = H_UNKNOWN; goto ddone  /* r.unknown: no RESUME can come */
#else
	:: !ok && !pc -> d_ho = H_UNKNOWN; goto ddone                 /* r.unknown */
	/* setupFailed, no check: the source may have read LOADED and
	 * written COMMIT: abortCommit (2985f11, af0ad13) */
	:: !ok && d_pcfail -> goto setupfailed
#if MUTANT == 22
	:: !ok && pc && !d_pcfail -> d_ho = H_UNKNOWN; goto ddone     /* r.unknown at once, no listen */
#else
	/* part of LOADED may have reached the source, which then commits;
	 * its COMMIT lost, it reconnects with RESUME (recommit) */
	:: !ok && pc && !d_pcfail -> goto uncommitted   /* pcRecv.uncommitted */
#endif
#endif
	:: else -> skip
	fi;
#ifdef CHECK
	/* receiver.loop in loaded while the check is open (checkOpen: the
	 * check promised, VERIFIED's send not begun; recv: switchover_timeout,
	 * recvHashes' stall rule). No COMMIT can have been written: a break
	 * or a silence fails a post-copy destination that lacks owed pages
	 * (checkBroke: its copy is no whole guest, and its source resumes
	 * without reconnecting); one that holds every page ends
	 * handover-unknown at once: its copy may be the only one, and no
	 * RESUME can come (no listen: uncommitted only outside the window).
	 * A COMMIT here, which only a source that broke its promise sends,
	 * is refused (commitRefused: checkOpen; unreached, README). */
	if
	/* receiver.hashes: the compare. d_bad: the check finds differing
	 * pages; a ghost chosen here, since a copy whose pages differ is one
	 * that no check has seen until then (and it runs as without the
	 * check). One step with the read: no other process reads d_bad
	 * while the destination is loaded. */
	:: atomic { s2d?HASHES -> if :: skip :: d_bad = 1 fi }
#if GUARD
	:: s2d?COMMIT -> goto refuse
#else
	:: s2d?COMMIT -> goto commit
#endif
	:: s2d?ABORT -> d_word = 1; d_ho = H_FAILED; goto ddone
	:: d_cancel -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone   /* held.Err: giveUp ABORT */
	/* the fault service fails (watchSetup cuts the wait): setupFailed,
	 * the check open: no COMMIT can have been written, giveUp's ABORT */
	:: d_pcfail -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone
	:: atomic { !d_cancel && !d_pcfail && GIVEUP -> giveup() }    /* a cut, or silence */
		if
		:: d_pc && !d_full -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone   /* checkBroke: giveUp */
#if MUTANT == 17
		:: !(d_pc && !d_full) -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone   /* gives the whole guest up */
#else
		:: !(d_pc && !d_full) -> d_ho = H_UNKNOWN; goto ddone     /* r.unknown, at once */
#endif
		fi
	fi;
	/* receiver.hashes: VERIFIED; its first byte closes the window */
	if
	:: !d_bad -> dsend(VERIFIED, ok)
	:: d_bad -> dsend(VBAD, ok)
	fi;
	if
	:: ok -> skip
	/* send VERIFIED failed: a verdict of differing pages (the source never
	 * commits on it), or a cancel that cut the send (held.Err): failed,
	 * giveUp's ABORT; a fault service that failed (its cut, or any
	 * failure seen after it: lostAfterLoaded asks setupFailed first,
	 * c4fb038): the source may have read VERIFIED and committed, so
	 * failed, and the ABORT told as abortCommit does; else part of it may
	 * have reached the source, which then commits: unknown in pre-copy;
	 * in post-copy it listens for the RESUME of a source whose COMMIT was
	 * lost first, as after a break from VERIFIED's first byte on (below) */
	:: !ok && (d_bad || (d_cancel && !d_pcfail)) -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone
#if MUTANT == 29
	:: !ok && !d_bad && d_pcfail -> goto uncommitted    /* before c4fb038: under the cut context */
#else
	:: !ok && !d_bad && d_pcfail -> goto setupfailed                       /* setupFailed: abortCommit */
#endif
#if MUTANT == 20
	:: !ok && !(d_bad || d_cancel || d_pcfail) && d_pc && !d_full -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone   /* checkBroke, window taken for open */
	:: !ok && !(d_bad || d_cancel || d_pcfail) && !(d_pc && !d_full) -> d_ho = H_UNKNOWN; goto ddone
#else
	:: !ok && !(d_bad || d_cancel || d_pcfail) && !pc -> d_ho = H_UNKNOWN; goto ddone    /* r.unknown */
	:: !ok && !(d_bad || d_cancel || d_pcfail) && pc -> goto uncommitted   /* pcRecv.uncommitted */
#endif
	fi;
	/* From VERIFIED's first byte on, as without the check (below), but
	 * for a verdict of differing pages: failed on a break (checkBroke:
	 * check.bad > 0), COMMIT still believed. */
#endif
	/* receiver.loop in loaded (recv: switchover_timeout) */
	if
	:: s2d?COMMIT -> goto commit
	:: s2d?ABORT -> d_word = 1; d_ho = H_FAILED; goto ddone
	:: d_cancel && !d_pcfail -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone   /* held.Err: giveUp ABORT */
	/* the fault service fails (watchSetup cuts the wait; asked first,
	 * whatever else ended it): setupFailed */
#ifdef CHECK
	:: d_pcfail && d_bad -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone   /* check.bad > 0: giveUp */
	:: d_pcfail && !d_bad -> goto setupfailed
#else
	:: d_pcfail -> goto setupfailed
#endif
	:: atomic { !d_cancel && !d_pcfail && GIVEUP -> giveup() }    /* a cut, or silence for switchover_timeout */
		if
#if defined(CHECK) && MUTANT != 21
		:: d_bad -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone    /* checkBroke: check.bad > 0; giveUp */
#define NOTBAD (!d_bad)
#else
#define NOTBAD 1
#endif
#if MUTANT == 8
		:: NOTBAD && !pc -> d_ho = H_FAILED; goto ddone    /* gives the state up on its own: giveUp, not r.unknown */
#else
		:: NOTBAD && !pc -> d_ho = H_UNKNOWN; goto ddone                      /* r.unknown */
#endif
#if MUTANT == 20
		/* checkBroke, the window taken for open: fails lacking owed
		 * pages; holding every page, r.unknown at once (no listen) */
		:: NOTBAD && pc && !d_full -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone
		:: NOTBAD && pc && d_full -> d_ho = H_UNKNOWN; goto ddone
#else
		:: NOTBAD && d_pcfail -> goto setupfailed      /* lostAfterLoaded asks setupFailed first */
		:: NOTBAD && pc && !d_pcfail                 /* pcRecv.uncommitted */
uncommitted:
			/* rctx: reconnect_timeout, or Receive's own context (r.held)
			 * ending: a cancel. The fault service failing meanwhile no
			 * longer ends it (README, "Found": the gap, closed
			 * 2026-12-08; mutants 29, 30 listen as before) */
			listen(got, UNCOMMITTED_STOP);
			if
#if MUTANT == 7
			:: got -> send(d2s, MISSING, ok); goto wait   /* pcRecv.reconnect's answer: it never ran the guest */
#elif MUTANT == 25
			:: got ->
				d_word = 1; d_ho = H_FAILED; send(d2s, TABORT, ok); goto ddone   /* once, no tellAborted */
#else
			:: got ->                                /* r.fail, then tellAborted: encodeResumeAbort */
				d_word = 1; d_ho = H_FAILED; tell_aborted(TABORT, UNCOMMITTED_STOP); goto ddone
#endif
#if MUTANT == 29 || MUTANT == 30
			:: !got -> d_ho = H_UNKNOWN; goto ddone  /* the code before: r.unknown, whatever ended the listening */
#else
			/* no RESUME: a fault service that failed meanwhile fails
			 * this side (giveUp), as setupFailed would; else r.unknown */
			:: !got && d_pcfail && !d_cancel -> d_ho = H_FAILED; goto ddone
			:: !got && !(d_pcfail && !d_cancel) -> d_ho = H_UNKNOWN; goto ddone  /* r.unknown */
#endif
			fi
#endif
		fi
	fi;
setupfailed:
	/* pcRecv.setupFailed after LOADED, the check not open, no differing
	 * pages: the source may have written COMMIT, so this side fails and
	 * tells its ABORT as one that got COMMIT and does not act on it
	 * (abortCommit under Receive's context, which only a cancel ends:
	 * then the ABORT's send alone). Reached only in post-copy (d_pcfail). */
	d_ho = H_FAILED;
#if MUTANT == 26
	send(d2s, ABORT, ok);                   /* once, giveUp: the code before af0ad13 */
#else
	tell_aborted(ABORT, d_cancel);
#endif
	goto ddone;
commit:
#ifdef CHECK
	/* receiver.commit: commitRefused. In post-copy the pages owed at the
	 * check are compared as they land (landCheck.landed): d_bad, a ghost
	 * chosen here, says that one landed differing before COMMIT came (a
	 * transport's or hint provider's bug); the copy is wrong and the
	 * source still holds the page. One that lands after COMMIT, or whose
	 * report the landed lane had not taken yet, is known only once the VM
	 * runs (ErrPostcopyCheck): not modelled, nor a second copy of a
	 * checked page landing differing. */
	if
	:: d_pc && !d_full && !d_bad ->
		if
		:: skip
		:: d_bad = 1
#if MUTANT == 23
			; goto act                  /* commitRefused without landedBad */
#endif
		fi
	:: else -> skip
	fi;
#if GUARD
	if
	:: d_bad -> goto refuse         /* check.bad > 0 (only a source that broke its rule commits then), landedBad > 0 */
	:: else -> skip
	fi;
#endif
	goto act;
refuse:
	/* commitRefused: failed, never runs here. Pre-copy: giveUp, ABORT
	 * once. Post-copy: pcRecv.refuseCommit, r.fail at once (the resolver
	 * sees failing), then tellAborted: ABORT on the session, the
	 * source's answer waited for, else it lingers answering RESUMEs. */
	d_ho = H_FAILED;
	if
	:: !d_pc -> send(d2s, ABORT, ok)
#if MUTANT == 24
	:: d_pc -> send(d2s, ABORT, ok)          /* once, as giveUp: the code before aef5da6 */
#else
	:: d_pc -> tell_aborted(ABORT, d_cancel)
#endif
	fi;
	goto ddone;
act:
#endif
	if
	:: !pc ->                                                       /* receiver.commit */
		if
		:: d_cancel -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone
		:: else -> atomic { dst_runs(); d_acted = 1; d_ho = H_RUNNING };
			send(d2s, RUNNING, ok); goto ddone
		fi
	:: pc -> skip
	fi;
	/* pcRecv.commit: failedEarly, held.hold(), Resume; where the VM
	 * does not run, abortCommit (0dbff91): failed, the ABORT told and
	 * lingering (tellAborted), but after a cancel at the hold, whose
	 * context has ended: its send alone, and a source that loses it ends
	 * handover-unknown (a cancel: (j) excuses it) */
	if
#if MUTANT == 27
	:: d_pcfail -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone   /* failedEarly's ABORT once (giveUp): before 0dbff91 */
#else
	:: d_pcfail -> d_ho = H_FAILED; tell_aborted(ABORT, d_cancel); goto ddone   /* failedEarly: abortCommit(r.held) */
#endif
	:: d_cancel && !d_pcfail -> d_ho = H_FAILED; send(d2s, ABORT, ok); goto ddone   /* the hold fails: abortCommit, its ctx ended */
	/* held, Resume fails (a fault): abortCommit under heldCtx.telling,
	 * which a plain cancel or a refused Cancel would end; neither can
	 * come here (one fault per run; the resolver cancels only a
	 * destination not held), so the model's telling ends only when no
	 * source can come */
	:: atomic { !FAULT -> d_resfail = 1; d_held = 1; d_ho = H_FAILED }
#if MUTANT == 28
		send(d2s, ABORT, ok);               /* a failed Resume's ABORT once (giveUp): before 0dbff91 */
#else
		tell_aborted(ABORT, 0);
#endif
		goto ddone
	:: atomic { !d_pcfail && !d_cancel -> d_held = 1; dst_runs(); d_acted = 1; d_ho = H_POSTCOPY }
	fi;
	send(d2s, RUNNING, ok);
	if
	:: !ok -> goto relisten
	:: else -> skip
	fi;
wait:                                                               /* pcRecv.wait */
	if
	:: d_full -> goto finish
	:: s2d?PAGES -> d_full = 1; goto finish
	:: d_pcfail -> dst_broken(1); goto ddone
	:: s2d?SETTLED -> goto wait          /* not waited for here: ignored */
	:: s2d?BROKEN -> goto wait
	:: atomic { GIVEUP -> giveup() }; goto relisten   /* the session broke or stalled */
	fi;
relisten:                                                           /* pcRecv.reconnect */
	listen(got, 0);
	if
	:: got && d_pcfail -> dst_broken(1); goto ddone
	:: got && !d_pcfail ->
#if MUTANT == 4
		send(d2s, TABORT, ok); d_ho = H_FAILED; goto ddone   /* the ABORT that answers the RESUME */
#endif
		send(d2s, MISSING, ok); goto wait                           /* pcRecv.resume */
#if MUTANT == 9
	:: !got -> goto finished                   /* completeWithout without its Pending() == 0 */
#else
	:: !got && d_full -> goto finished                              /* completeWithout */
	:: !got && !d_full -> dst_broken(0); goto ddone                 /* errNoSourceResumed: nobody to tell */
#endif
	fi;
finish:                                                             /* pcRecv.finish, tellSettled */
	send(d2s, SETTLED, ok);
	if
	:: !ok -> listen(got, 0);                                       /* tellSettled: reconnect */
		if
		:: got -> send(d2s, MISSING, ok); goto finish   /* an empty MISSING, then SETTLED again */
		:: else -> goto finished
		fi
	:: ok -> recv(s2d, m, got);                                     /* awaitSourceClose */
		if
		:: got && m == SETTLED -> skip
		:: got && m == PAGES -> skip       /* a late push; the source answers SETTLED next */
		:: else -> linger_to_tell(SETTLED, SETTLED, 0)              /* lingerToTell */
		fi
	fi;
finished:
	d_ho = H_RUNNING;
ddone:
	/* endMigration / migrationDone; a failed or broken destination
	 * exits (v.finish), the others stay. */
	atomic {
		hangup(); d_listen = 0;
		if
		/* property (f): a destination says running (its migration
		 * completed) only holding every page of the current guest:
		 * pre-copy's state, post-copy's owed pages (pcRecv.finish and
		 * completeWithout: Pending() == 0), never older than the source's */
		:: d_ho == H_RUNNING -> assert(d_full); d_side = SD_RUNNING    /* property (f) */
		:: d_ho == H_UNKNOWN -> d_side = SD_UNKNOWN; if :: d_vm == V_PAUSED -> d_vm = V_HUNKNOWN :: else fi
		:: d_ho == H_FAILED -> d_side = SD_FAILED; d_vm = V_STOPPED     /* v.finish: exits */
		:: d_ho == H_PCBROKEN -> d_side = SD_PCBROKEN; d_vm = V_STOPPED
		fi;
		d_own = 0; d_done = 1
	};
	/* the process exits after the stop (cmd/ferry-vmm: Run returns) */
	if
	:: d_side == SD_FAILED || d_side == SD_PCBROKEN -> d_dead = 1
	:: else -> skip
	fi
	} unless { d_dead }
}

/* ---- faults ------------------------------------------------------------ */

/* At most one fault of a process per run (FAULT, defined at the top:
 * a crash, the fault service failing, a cancel of either side), besides
 * BREAKS connection breaks: two crashes lose the guest by definition,
 * and the other pairs only multiply the states. */

proctype Faults() {
	do
	:: atomic { breaks > 0 && up -> up = 0; breaks-- }                  /* a cut: each side notices on its own */
	:: atomic { !up && (nempty(s2d) || nempty(d2s)) -> do :: s2d?_ :: d2s?_ :: empty(s2d) && empty(d2s) -> break od }  /* in flight: lost */
	:: atomic { !FAULT && !s_dead -> s_crash = 1; s_dead = 1; s_vm = V_STOPPED; up = 0; s_dial = 0 }  /* kill -9 */
	:: atomic { !FAULT && !d_dead -> d_crash = 1; d_dead = 1; d_vm = V_STOPPED; up = 0; d_listen = 0; d_silent = 0 }
	:: atomic { !FAULT && d_pc -> d_pcfail = 1 }                    /* the fault service fails */
	:: atomic { !FAULT && d_own && !d_held -> d_cancel = 1; d_opcancel = 1 }   /* an operator's migrate-cancel, the VMM's SIGTERM (incomingWait) */
	/* migrate-cancel on the source, or migrate's Ctrl-C (follow):
	 * cancelRunning cancels Send's context. In the live passes it is one
	 * of the failures Src already takes; from the hold on (either mode,
	 * before COMMIT) it is ignored (hold.go: nothing changes, so it is not
	 * an event here). Committing without the hold is only the mutants'. */
	:: atomic { !FAULT && !s_held && !s_done && !s_dead && (s_ho == H_SWITCHOVER || s_ho == H_COMMITTING) -> s_cancel = 1 }
	:: break
	od
}

/* ---- migrate-resolve on a VMM (vmm/handover.go: resolveLocked) -------- */

/* One action on the source, under its run lock; ok when the side is
 * what the action leads to (resolver.do checks the answer). */
inline vmm_resolve_src(want, ok) {
	atomic {
		if
		:: s_dead -> ok = 0
		:: !s_dead && s_side == want -> ok = 1                      /* done before */
		:: !s_dead && s_side != want && s_side != SD_UNKNOWN -> ok = 0   /* nothing to resolve */
		:: !s_dead && s_side != want && s_side == SD_UNKNOWN ->
			if
			:: want == SD_RUNNING -> src_runs(0)                    /* handover-unknown → paused → running */
			:: want == SD_MIGRATED -> s_vm = V_MIGRATED
			fi;
			s_side = want; ok = 1
		fi
	}
}

inline vmm_resolve_dst(want, ok) {
	atomic {
		if
		:: d_dead -> ok = 0
		:: !d_dead && d_side == want -> ok = 1
		:: !d_dead && d_side != want && d_side != SD_UNKNOWN -> ok = 0
		:: !d_dead && d_side != want && d_side == SD_UNKNOWN ->
			if
			/* property (e): what migrate-resolve runs is the whole, current guest */
#if MUTANT == 5
			:: want == SD_RUNNING -> assert(d_full); dst_runs(); d_side = want; ok = 1    /* property (e) */
#else
			:: want == SD_RUNNING && d_pc && !d_full -> ok = 0      /* lacksPages: errLacksPages */
			:: want == SD_RUNNING && !(d_pc && !d_full) -> assert(d_full); dst_runs(); d_side = want; ok = 1    /* property (e) */
#endif
			:: want == SD_DISCARDED -> d_vm = V_DISCARDED; d_side = want; ok = 1; d_guess = d_guess || guess
			fi
		fi
	}
}

/* quit from the control socket (vmm/commands.go: outside, refusals) */
inline quit_dst() {
	atomic { if :: !d_dead && !d_own && d_vm != V_HUNKNOWN -> d_vm = V_STOPPED; d_dead = 1 :: else fi }
}

/* ---- migrate's resolver (cmd/migrate/resolve.go) ------------------------ */

/* What migrate's query of the destination gives plan: unreachable,
 * or dstSide of its answer. The engine reports a failed handover at
 * once (receiver.fail), so a destination that set d_ho = H_FAILED and
 * still tells its source (giveUp's ABORT, uncommitted's lingering
 * ABORT) answers failing until ddone. */
#if MUTANT == 15
#define D_QUERY (d_dead -> SD_UNREACH : (d_side == SD_MIGRATING && (d_ho == H_FAILED || d_ho == H_LOADED) -> SD_FAILING : d_side))
#else
#define D_QUERY (d_dead -> SD_UNREACH : (d_side == SD_MIGRATING && d_ho == H_FAILED -> SD_FAILING : d_side))
#endif

/* plan(src, dst): the whole policy, transcribed. */
inline plan(qs, qd, v, a1, a2, a3) {
	a1 = A_NONE; a2 = A_NONE; a3 = A_NONE;
	guess = (qs == SD_UNREACH);       /* ghost: the source could not be asked */
	if
	:: qd == SD_PCBROKEN -> v = VD_LOST
	:: qd != SD_PCBROKEN && qs == SD_PCBROKEN && qd == SD_RUNNING -> v = VD_MOVED
	:: qd != SD_PCBROKEN && qs == SD_PCBROKEN && qd == SD_MIGRATING -> v = VD_WAIT
	:: qd != SD_PCBROKEN && qs == SD_PCBROKEN && qd != SD_RUNNING && qd != SD_MIGRATING -> v = VD_LOST
	:: qd != SD_PCBROKEN && qs == SD_MIGRATING -> v = VD_WAIT
	:: qd != SD_PCBROKEN && qs == SD_UNKNOWN ->
		if
		:: qd == SD_RUNNING -> a1 = A_SRC_MIGRATED; v = VD_MOVED
		:: qd == SD_UNKNOWN -> a1 = A_DST_DISCARD; a2 = A_SRC_RESUME; a3 = A_DST_QUIT; v = VD_SOURCE
		:: qd == SD_DISCARDED -> a1 = A_SRC_RESUME; a2 = A_DST_QUIT; v = VD_SOURCE
		:: qd == SD_FAILED -> a1 = A_SRC_RESUME; v = VD_SOURCE
		/* the resume first; asked again, running beside failing: the cancel (below) */
		:: qd == SD_FAILING -> a1 = A_SRC_RESUME; v = VD_CANCELDST
		:: qd == SD_MIGRATING -> v = VD_WAIT
#if MUTANT == 2
		:: qd == SD_UNREACH -> a1 = A_SRC_RESUME; v = VD_SOURCE
		:: else -> v = VD_MANUAL
#else
		:: else -> v = VD_MANUAL
#endif
		fi
	:: qd != SD_PCBROKEN && qs == SD_RUNNING ->
		if
		:: qd == SD_UNKNOWN -> a1 = A_DST_DISCARD; a2 = A_DST_QUIT; v = VD_SOURCE
		:: qd == SD_DISCARDED -> a1 = A_DST_QUIT; v = VD_SOURCE
		:: qd == SD_MIGRATING || qd == SD_FAILING -> v = VD_CANCELDST
		:: qd == SD_RUNNING -> v = VD_BOTHRUN
		:: else -> v = VD_SOURCE
		fi
	:: qd != SD_PCBROKEN && qs == SD_MIGRATED ->
		if
		:: qd == SD_UNKNOWN -> a1 = A_DST_RESUME; v = VD_MOVED
		:: qd == SD_RUNNING -> v = VD_MOVED
		:: else -> v = VD_MANUAL
		fi
	:: qd != SD_PCBROKEN && qs == SD_UNREACH ->
		if
		:: qd == SD_RUNNING -> v = VD_MOVED
		:: qd == SD_UNKNOWN || qd == SD_UNREACH -> v = VD_MANUAL   /* an unreachable destination may hold the guest */
#if MUTANT == 6
		:: qd == SD_MIGRATING -> v = VD_CANCELDST   /* plan before the fix (README, "Found") */
#else
		:: qd == SD_MIGRATING -> v = VD_WAIT        /* never cancelled: README, "Found" */
#endif
		:: else -> v = VD_IDLE
		fi
	fi
}

/* resolver.do for one step; ok 0 stops the plan (manual). */
inline do_step(a, ok) {
	if
	:: a == A_NONE -> ok = 1
	:: a == A_DST_DISCARD -> vmm_resolve_dst(SD_DISCARDED, ok)
	:: a == A_DST_RESUME -> vmm_resolve_dst(SD_RUNNING, ok)
	:: a == A_SRC_RESUME -> vmm_resolve_src(SD_RUNNING, ok)
	:: a == A_SRC_MIGRATED -> vmm_resolve_src(SD_MIGRATED, ok)
	:: a == A_DST_QUIT -> quit_dst(); ok = 1
	:: a == A_DST_QUIT -> ok = 1            /* quit's answer lost / refused: resolver.do goes on */
	fi
}

/* resolver.doAll: the steps in order, stopping at the first that fails */
inline do_all(ok) {
	do_step(a1, ok);
	if :: ok -> do_step(a2, ok) :: else fi;
	if :: ok -> do_step(a3, ok) :: else fi
}

/* resolver.resolve: query both (two calls, at two moments), plan, act.
 * v is the verdict reached (VD_MANUAL when it stopped). A cancel
 * verdict with steps (a failing destination beside a handover-unknown
 * source) carries them out first, whatever the wait, then polls again:
 * the cancel goes only beside a source that said running. */
inline resolve(v) {
	do
	:: atomic { qs = (s_dead -> SD_UNREACH : s_side) };
	   d_step { qd = D_QUERY; plan(qs, qd, v, a1, a2, a3); qs = 0; qd = 0 };
	   if
	   :: v == VD_WAIT -> skip                       /* poll again */
	   :: v == VD_CANCELDST && a1 != A_NONE ->      /* the source's resume first, then poll again */
		do_all(ok);
		if :: !ok -> v = VD_MANUAL; break :: else fi
	   :: v == VD_CANCELDST && a1 == A_NONE ->      /* cancelMigration(dst), poll again */
		atomic { if :: d_own && !d_held -> d_cancel = 1; d_guess = d_guess || guess :: else fi }
	   :: v == VD_WAIT || (v == VD_CANCELDST && a1 == A_NONE) -> v = VD_MANUAL; break   /* still migrating after the wait */
	   :: v != VD_WAIT && v != VD_CANCELDST ->
		do_all(ok);
		if :: !ok -> v = VD_MANUAL :: else fi;
		break
	   fi
	od
}

/* One pass of resolver.resolve as an operator's `migrate -resolve`:
 * both queries in one step (Ctl's resolve covers the moment between
 * them), and a wait is left to a later pass (Ops may run it again), as
 * is the cancel that follows a cancel verdict's steps. */
inline resolve_once(v) {
	d_step {
		qs = (s_dead -> SD_UNREACH : s_side); qd = D_QUERY;
		plan(qs, qd, v, a1, a2, a3); qs = 0; qd = 0
	};
	if
	:: v == VD_CANCELDST && a1 == A_NONE ->
		atomic { if :: d_own && !d_held -> d_cancel = 1; d_guess = d_guess || guess :: else fi }
	:: v != VD_CANCELDST || a1 != A_NONE ->
		do_all(ok);
		if :: !ok -> v = VD_MANUAL :: else fi
	fi
}

/* quitSource: quit the source only if it says it handed the guest over. */
inline quit_source() {
	atomic { if
		:: !s_dead && !s_own && (s_side == SD_MIGRATED || s_side == SD_PCBROKEN) &&
			s_vm != V_HUNKNOWN -> s_vm = V_STOPPED; s_dead = 1
		:: else
	fi }
}

/* `migrate -config job.hcl`: follow the source until done or silent,
 * then conclude (cmd/migrate run.go, follow.go, conclude.go, finish.go: run, follow, conclude,
 * finishCompleted). */
proctype Ctl() {
	byte qs, qd, v, a1, a2, a3; bit ok, guess;
	s_done || s_dead;
	if
	:: !s_dead && s_side == SD_MIGRATED -> v = VD_MOVED           /* completed */
	:: else -> resolve(v)                       /* unknown, postcopy-broken, failed (cleanup), silent */
	fi;
	if
	:: v == VD_MOVED -> if :: quit_source() :: skip fi      /* finishCompleted; quitSource's call may fail */
	:: else -> skip
	fi
}

/* An operator, at any time: resume or quit on either control socket,
 * `migrate -resolve` (a second resolver racing the first), and the
 * manual migrate-resolve resume that resolver.manual prints, only when
 * its condition holds. */
proctype Ops() {
	byte qs, qd, v, a1, a2, a3; bit ok, guess;
	do
	:: atomic {                                                     /* resume (outside) */
#if MUTANT == 3
		!s_dead && s_vm == V_PAUSED && s_own -> src_runs(0)
#else
		!s_dead && !s_own && s_vm == V_PAUSED -> src_runs(0)
#endif
	   }
	:: atomic { !d_dead && !d_own && d_vm == V_PAUSED -> dst_runs() }
	:: atomic { !s_dead && !s_own && s_vm != V_HUNKNOWN && s_vm != V_RUNNING ->    /* quit of a copy not running */
		s_vm = V_STOPPED; s_dead = 1; s_crash = 1 }
	:: atomic { !d_dead && !d_own && d_vm != V_HUNKNOWN && d_vm != V_RUNNING ->
		d_vm = V_STOPPED; d_dead = 1; d_crash = 1 }
	:: (s_done || s_dead) -> resolve_once(v);  /* migrate -resolve (before, plan waits for the source: nothing moves) */
	   if :: v == VD_MOVED -> if :: quit_source() :: skip fi :: else fi;
	   d_step { v = 0; a1 = 0; a2 = 0; a3 = 0; ok = 0; guess = 0 }
	/* "Only if the destination host is gone for good and the guest never ran there" */
	:: d_dead && !d_ran -> vmm_resolve_src(SD_RUNNING, ok); ok = 0
	/* "Only if the source is gone for good, the destination is handover-unknown,
	 * and the source never ran the guest after it paused" (migrate leaves the line out when it saw it run) */
	:: s_dead && !s_resumed -> vmm_resolve_dst(SD_RUNNING, ok); ok = 0
	:: break
	od
}

/* Property (b), once nothing else can move: the recovery the documents
 * give (migrate -resolve, then the printed manual steps when their
 * condition holds) leaves a copy running, unless the loss is one the
 * design accepts: both VMMs died; the only complete copy's VMM died (the
 * source before the destination held every page); the destination died
 * after it ran the guest; post-copy broke for good on the destination
 * (reported as lost, never "fixed" by resuming the source); an
 * operator cancelled the destination (migrate-cancel, its SIGTERM: "the
 * guest stays on the source") and the source died; the destination
 * gave the guest up on the protocol's word (the source's ABORT, its
 * RESUME before COMMIT: d_word; plan's discard), and the source died
 * after that word: the destination cannot know, and one side must move
 * first; with the page check (-DCHECK), the source died and the check
 * had found the destination's copy wrong (d_bad: the source's was the
 * only right one). Not accepted: any other failure of a destination that
 * held the state (one that gives it up on its own, mutants 8 and 17), and
 * migrate giving up a destination whose source was already gone (d_guess). */
#define ACCEPTED ((s_crash && d_crash) || (s_crash && !d_full) || (d_crash && d_ran) || d_broke || \
	(s_crash && d_opcancel) || (s_crash && (d_word || d_side == SD_DISCARDED) && !d_guess) || (s_crash && BADCOPY))

active proctype Judge() {
	byte qs, qd, v, a1, a2, a3; bit ok, guess;
	run Src(); run Dst(); run Faults(); run Ctl();
#ifndef NO_OPS
	run Ops();    /* -DNO_OPS: no operator racing the migration (a smaller search, for a quick look) */
#endif
	timeout;
	/* A silent session never blocks the source's next try for ever: once
	 * nothing else can move, no source is still trying to reconnect (its
	 * tries end only when they got in, or no destination can take them).
	 * pan's end-state check says as much in the safety runs; this says
	 * it with the never claim in too (the mutants keep it). Checked
	 * before (b), which a source stuck in its reconnect beside a
	 * destination that never got COMMIT fails too: so a mutant's run
	 * reports (g) where (g) is what went wrong (model_test.go, 11, 12). */
	assert(!s_dial);    /* property (g) */
	resolve(v);
	if :: v == VD_MOVED -> quit_source() :: else fi;
	if
	:: !S_RUNS && !D_RUNS && d_dead && !d_ran && !s_dead -> vmm_resolve_src(SD_RUNNING, ok)
	:: !S_RUNS && !D_RUNS && s_dead && !s_resumed && !d_dead -> vmm_resolve_dst(SD_RUNNING, ok)
	:: else -> skip
	fi;
	assert(S_RUNS || D_RUNS || ACCEPTED);    /* property (b) */
	assert(breaks <= BREAKS)    /* the model's own: the budget never wrapped (send, recv); no property */
}
