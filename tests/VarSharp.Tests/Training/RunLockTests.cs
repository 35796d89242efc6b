using VarSharp.Tests.Support;
using VarSharp.Training;

namespace VarSharp.Tests.Training;

/// <summary>One training process per run folder: a second one on the same folder fails at once and writes nothing.</summary>
public class RunLockTests
{
    [Fact]
    public void ALockIsExclusiveUntilDisposedAndLeavesNoFile()
    {
        using var tmp = new TempFolder();
        var first = RunLock.Acquire(tmp.Path);
        var e = Assert.Throws<VarSharpException>(() => RunLock.Acquire(tmp.Path));
        Assert.Equal($"Run folder {tmp.Path} is in use by another training process; wait for it to end or stop it (Ctrl+C, or kill PID: it checkpoints first), or train into another folder.", e.Message);
        first.Dispose();
        Assert.False(File.Exists(Path.Combine(tmp.Path, RunLock.FileName)));
        // A leftover file (a process killed before it could delete it) blocks nobody: only a live holder does.
        File.WriteAllText(Path.Combine(tmp.Path, RunLock.FileName), "stale");
        RunLock.Acquire(tmp.Path).Dispose();
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
            var e = Assert.Throws<VarSharpException>(() => VarTrainer.Resume(run));
            Assert.StartsWith($"Run folder {run} is in use by another training process (pid {Environment.ProcessId}, started ", e.Message);
            Assert.Equal(log, File.ReadAllText(Path.Combine(run, RunFolder.LogFile)));
        }
        using var second = VarTrainer.Resume(run);
        Assert.Equal(3, second.Step);
    }
}
