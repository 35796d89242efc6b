using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using VarSharp.Training;

namespace VarSharp.Cli.Commands;

/// <summary>How a training verb shows one optimizer step: where it is, its rate, and the text after the step count.</summary>
internal sealed record StepLine(long Step, long TotalSteps, double StepsPerSecond, string Text);

/// <summary>
/// Runs a trainer under the console display both training verbs share. On a terminal: a progress bar per preparatory
/// task (tokenizing) and one for the steps (step, loss, rate, ETA), with other events printed above the bars. Otherwise
/// (logs, pipes, tests): plain lines — preparation at every tenth, a step line every <c>logEvery</c> steps with its
/// ETA, and the other events. Ctrl+C or SIGTERM stops the run after the current step with a checkpoint.
/// </summary>
internal static class TrainingConsole
{
    /// <summary>" in N slices" when a batch runs with gradient accumulation, for the start line; empty otherwise.</summary>
    public static string Slices(int gradAccum) => gradAccum > 1 ? $" in {gradAccum} slices" : "";

    /// <summary>
    /// Calls <paramref name="run"/> with an observer and a stop token. <paramref name="step"/> recognises step events;
    /// <paramref name="describe"/> gives the line for any other event worth printing (null: none). Returns the run's
    /// result, the last steps/s a step reported (0 when none ran) and the exit code of a stop by signal (null: none).
    /// </summary>
    public static (T Result, double StepsPerSecond, int? StopExitCode) Run<T>(ParseResult parse, long totalSteps, long startStep, int logEvery,
        Func<Action<TrainEvent>, CancellationToken, T> run, Func<TrainEvent, StepLine?> step, Func<TrainEvent, string?> describe)
    {
        var writer = parse.InvocationConfiguration.Output;
        bool realConsole = ReferenceEquals(writer, Console.Out);
        bool terminal = realConsole && !Console.IsOutputRedirected;
        double rate = 0;
        var (result, stopExit) = LongRun.Stoppable(realConsole, token =>
        {
            if (!terminal) return run(e => PrintLine(writer, e, logEvery, step, describe, ref rate), token);
            var console = CliConsole.For(writer);
            return console.Progress()
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    ProgressTask? prepare = null;
                    ProgressTask? training = null;
                    return run(e =>
                    {
                        if (e is PrepareEvent p)
                        {
                            if (prepare is null || prepare.Description != p.What)
                            {
                                prepare?.StopTask();
                                prepare = ctx.AddTask(p.What, maxValue: Math.Max(1, p.Total));
                            }
                            prepare.Value = p.Done;
                        }
                        else if (step(e) is { } s)
                        {
                            rate = s.StepsPerSecond;
                            if (training is null)
                            {
                                prepare?.StopTask();
                                training = ctx.AddTask("training", maxValue: totalSteps);
                                training.Value = startStep;
                            }
                            training.Value = s.Step;
                            training.Description = Invariant($"step {s.Step}/{s.TotalSteps} {s.Text} {s.StepsPerSecond:0.00} it/s");
                        }
                        else if (describe(e) is { } line)
                        {
                            console.MarkupLine(Markup.Escape(line));
                        }
                    }, token);
                });
        });
        return (result, rate, stopExit);
    }

    private static void PrintLine(TextWriter writer, TrainEvent e, int logEvery, Func<TrainEvent, StepLine?> step,
        Func<TrainEvent, string?> describe, ref double rate)
    {
        if (e is PrepareEvent p)
        {
            // The start, every tenth and the end.
            if (p.Done == 0 || p.Done == p.Total || p.Done * 10 / p.Total != (p.Done - TokenPyramids.Chunk) * 10 / p.Total)
                writer.WriteLine(Invariant($"{p.What}: {p.Done}/{p.Total}"));
        }
        else if (step(e) is { } s)
        {
            rate = s.StepsPerSecond;
            if (s.Step % logEvery != 0) return;
            double eta = (s.TotalSteps - s.Step) / Math.Max(s.StepsPerSecond, 1e-9);
            writer.WriteLine(Invariant(
                $"step {s.Step}/{s.TotalSteps} {s.Text} {s.StepsPerSecond:0.00} it/s ETA {RunStatus.Duration(eta)}"));
        }
        else if (describe(e) is { } line)
        {
            writer.WriteLine(line);
        }
    }

    public static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
