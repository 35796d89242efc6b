using VarSharp.Tests.Support;
using VarSharp.Training;

namespace VarSharp.Tests.Training;

/// <summary>One training process per run folder: a second one on the same folder fails at once and writes nothing.</summary>
public class RunLockTests
{
    [Fact]
    public void ALockIsExclusiveUntilDisposed()
    {
        using var tmp = new TempFolder();
        var first = RunLock.Acquire(tmp.Path);
        var e = Assert.Throws<RunFolderInUseException>(() => RunLock.Acquire(tmp.Path));
        Assert.Equal($"Run folder {tmp.Path} is in use by another training process; wait for it to end or stop it (Ctrl+C, or kill its process: it checkpoints first), or train into another folder.", e.Message);
        Assert.True(RunLock.IsHeld(tmp.Path));
        first.Dispose();
        // The file stays and blocks nobody: only a live holder does.
        Assert.True(File.Exists(Path.Combine(tmp.Path, RunLock.FileName)));
        Assert.False(RunLock.IsHeld(tmp.Path));
        RunLock.Acquire(tmp.Path).Dispose();
    }

    [Fact]
    public void ANewRunThatLosesTheFolderToAnotherTrainerDeletesNothingOfIt()
    {
        using var tmp = new TempFolder();
        var (tokenizer, data) = VarTrainerTests.Inputs(tmp);
        var run = tmp.File("run");
        Directory.CreateDirectory(run);
        var tok = VarSharp.Checkpoints.ModelFolder.ReadVqVaeConfig(VarSharp.Checkpoints.ModelFolder.ConfigPath(tokenizer));
        // The other trainer took the (still empty) folder a moment earlier: it holds the lock, its files are to come.
        using var other = RunLock.Acquire(run);
        Assert.Throws<RunFolderInUseException>(() => VarTrainer.Start(run, VarTrainerTests.Model(tok), VarTrainerTests.Train(tokenizer, data)));
        Assert.True(RunLock.IsHeld(run));
        Assert.True(File.Exists(Path.Combine(run, RunLock.FileName)));
    }

    [Fact]
    public void ResumingARunThatIsStillOpenIsRefusedBeforeAnythingIsWritten()
    {
        using var tmp = new TempFolder();
        var (tokenizer, data) = VarTrainerTests.Inputs(tmp);
        var run = tmp.File("run");
        var tok = VarSharp.Checkpoints.ModelFolder.ReadVqVaeConfig(VarSharp.Checkpoints.ModelFolder.ConfigPath(tokenizer));
        using (var first = VarTrainer.Start(run, VarTrainerTests.Model(tok), VarTrainerTests.Train(tokenizer, data)))
        {
            first.Run(stopAtStep: 3);
            var log = File.ReadAllText(Path.Combine(run, RunFolder.LogFile));
            var e = Assert.Throws<RunFolderInUseException>(() => VarTrainer.Resume(run));
            Assert.StartsWith($"Run folder {run} is in use by another training process (pid {Environment.ProcessId}, started ", e.Message);
            Assert.Equal(log, File.ReadAllText(Path.Combine(run, RunFolder.LogFile)));
        }
        using var second = VarTrainer.Resume(run);
        Assert.Equal(3, second.Step);
    }

    /// <summary>
    /// The new-run and resume checks run again under the lock: a folder another trainer used during this one's setup is
    /// reported as in use (so no cleanup deletes that trainer's files), and the lock is released.
    /// </summary>
    [Fact]
    public void AFailedRecheckUnderTheLockIsAFolderInUseAndReleasesTheLock()
    {
        using var tmp = new TempFolder();
        var run = tmp.File("run");
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, RunFolder.ConfigFile), "{}");   // another trainer's config, written meanwhile
        var e = Assert.Throws<RunFolderInUseException>(() => RunFolder.Create(run, out _, () => RunFolder.ForNewRun(run)));
        Assert.Contains("already exists and is not empty", e.Message, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(run, RunFolder.ConfigFile)));
        using var again = RunFolder.Create(run, out _);   // the lock was released
    }

    /// <summary>Half-made checkpoint folders a stopped session left (being written, being pruned) go when a run opens the folder.</summary>
    [Fact]
    public void OpeningARunFolderSweepsHalfMadeCheckpoints()
    {
        using var tmp = new TempFolder();
        var checkpoints = Directory.CreateDirectory(tmp.File("run/checkpoints")).FullName;
        foreach (var name in new[] { ".step-0000005.0123abcd.tmp", ".step-0000003.deleting-99ff", "step-0000004", ".keep" })
            Directory.CreateDirectory(Path.Combine(checkpoints, name));
        using (RunFolder.Create(tmp.File("run"), out _)) { }
        Assert.Equal([".keep", "step-0000004"], Directory.GetDirectories(checkpoints).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }
}

/// <summary>`status` reads a run folder without touching it: running, stopped, finished, and the figures of its log.</summary>
public class RunStatusTests
{
    [Fact]
    public void AStatusFollowsARunThroughItsLife()
    {
        using var tmp = new TempFolder();
        var (tokenizer, data) = VarTrainerTests.Inputs(tmp);
        var run = tmp.File("run");
        var tok = VarSharp.Checkpoints.ModelFolder.ReadVqVaeConfig(VarSharp.Checkpoints.ModelFolder.ConfigPath(tokenizer));
        using (var t = VarTrainer.Start(run, VarTrainerTests.Model(tok), VarTrainerTests.Train(tokenizer, data)))
        {
            t.Run(stopAtStep: 3);
            var running = RunStatus.Read(run);
            Assert.Equal(("transformer", "running", 3L, 6L, 1), (running.Kind, running.State, running.Step, running.TotalSteps, running.Sessions));
            Assert.NotNull(running.LastTrain);
            Assert.EndsWith("step-0000003", running.LastCheckpoint);
            Assert.True(running.EtaSeconds > 0);
        }
        var stopped = RunStatus.Read(run);
        Assert.Equal("stopped", stopped.State);
        Assert.Null(stopped.EtaSeconds);
        Assert.Contains($"continue with: varsharp train --resume {run}", stopped.Describe());

        using (var t = VarTrainer.Resume(run)) t.Run();
        var finished = RunStatus.Read(run);
        Assert.Equal(("finished", 6L, 2), (finished.State, finished.Step, finished.Sessions));
        Assert.Equal(6L, (long)finished.LastEval!["step"]!);   // evaluations every 3 steps, the last at the end
        var json = VarSharp.Tests.Cli.CliRun.Of("status", run, "--json");
        Assert.Equal(0, json.ExitCode);
        Assert.Equal("finished", System.Text.Json.Nodes.JsonNode.Parse(json.Output)!["state"]!.GetValue<string>());
    }

    [Fact]
    public void AFolderThatIsNoRunIsOneSentence()
    {
        using var tmp = new TempFolder();
        var run = VarSharp.Tests.Cli.CliRun.Of("status", tmp.Path);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"error: {tmp.Path} has no run.json, so it is not a training run folder.", run.Error.TrimEnd());
    }
}
