using System.CommandLine;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>What the long-running verbs (training, evaluation) share: the thread count and a clean stop on Ctrl+C or SIGTERM.</summary>
internal static class LongRun
{
    /// <summary>The --threads option (torch's intra-op threads; default: libtorch's choice, one per core).</summary>
    public static Option<int?> ThreadsOption() => new("--threads") { Description = "torch threads (default: one per core)" };

    /// <summary>Applies --threads when given; the thread count is part of what makes CPU runs bit-reproducible.</summary>
    public static void SetThreads(int? threads)
    {
        if (threads is not { } n) return;
        if (n < 1) throw new VarSharpException($"--threads must be at least 1 but is {n}.");
        set_num_threads(n);
    }

    /// <summary>
    /// The thread count of a resumed training run: without --threads the checkpoint's own (so the continued run equals
    /// an uninterrupted one bit for bit), with it the given count and a note when that differs from the checkpoint's.
    /// </summary>
    public static void SetResumeThreads(TextWriter writer, string resume, int? given)
    {
        var stored = VarSharp.Training.CheckpointWriter.StoredThreads(VarSharp.Training.CheckpointWriter.Resolve(resume));
        if (given is null)
        {
            if (stored is not { } n) return;
            set_num_threads(n);
            writer.WriteLine($"threads: {n}, as the checkpoint was trained (the same count keeps the run bit-identical to an uninterrupted one)");
            return;
        }
        SetThreads(given);
        if (stored is { } s && s != given)
            writer.WriteLine($"note: the checkpoint was trained with {s} threads; with {given} the continued run may not be bit-identical to an uninterrupted one.");
    }

    /// <summary>The shell's exit codes for a process stopped by SIGINT (Ctrl+C) and SIGTERM: 128 + the signal number.</summary>
    public const int StoppedByInterrupt = 130, StoppedByTerminate = 143;

    /// <summary>
    /// Runs <paramref name="run"/> with a token that Ctrl+C or SIGTERM (e.g. from `timeout`) cancel, so a trainer finishes
    /// its step and checkpoints instead of dying mid-write; a second signal is left to its default and ends the process
    /// at once. Returns the result and, when a signal stopped the run, the exit code that says so (130 or 143), so that
    /// `train … &amp;&amp; next` does not go on with an unfinished model. Only the real process's console and signals are
    /// hooked; in-process callers (tests) pass false.
    /// </summary>
    public static (T Result, int? StopExitCode) Stoppable<T>(bool realConsole, Func<CancellationToken, T> run)
    {
        using var stop = new GracefulStop();
        if (realConsole) Signals.Begin(stop);
        try
        {
            var result = run(stop.Token);
            return (result, stop.ExitCode);
        }
        finally
        {
            if (realConsole) Signals.End(stop);
        }
    }

    /// <summary>A run that a first signal asks to stop; the exit code says which signal it was.</summary>
    internal sealed class GracefulStop : IDisposable
    {
        private readonly CancellationTokenSource _cancel = new();
        public CancellationToken Token => _cancel.Token;
        public int? ExitCode { get; private set; }

        /// <summary>True for the first signal (the run stops after its step); false for any later one.</summary>
        public bool Request(int exitCode)
        {
            lock (_cancel)
            {
                if (ExitCode is not null) return false;
                ExitCode = exitCode;
            }
            _cancel.Cancel();
            return true;
        }

        public void Dispose() => _cancel.Dispose();
    }

    /// <summary>
    /// The process's SIGINT and SIGTERM handler, installed once by Main: a first signal during a stoppable run asks it
    /// to stop cleanly; any other signal removes the temporary files being written (<see cref="TemporaryPaths"/>) and
    /// lets the signal end the process as usual.
    /// </summary>
    internal static class Signals
    {
        private static readonly object Gate = new();
        private static GracefulStop? active;

        public static IDisposable[] Install() =>
        [
            PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => Handle(ctx, StoppedByInterrupt)),
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => Handle(ctx, StoppedByTerminate)),
        ];

        public static void Begin(GracefulStop stop)
        {
            lock (Gate) active = stop;
        }

        public static void End(GracefulStop stop)
        {
            lock (Gate) if (active == stop) active = null;
        }

        private static void Handle(PosixSignalContext ctx, int exitCode)
        {
            // Under the gate: the run cannot end and dispose its stop between the look and the request.
            lock (Gate)
            {
                if (active is not null && active.Request(exitCode))
                {
                    ctx.Cancel = true;
                    return;
                }
            }
            TemporaryPaths.DeleteAll();
        }
    }
}
