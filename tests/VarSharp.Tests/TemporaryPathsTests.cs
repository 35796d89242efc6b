using VarSharp.Checkpoints;
using VarSharp.Tests.Support;

namespace VarSharp.Tests;

/// <summary>What a signal handler deletes: exactly the temporary files and folders being written at that moment.</summary>
public class TemporaryPathsTests
{
    [Fact]
    public void WritesAreTrackedWhileTheyRunAndDeleteAllRemovesThem()
    {
        using var tmp = new TempFolder();
        // Caught in the middle of a bundle write: its temporary folder is tracked, and DeleteAll removes it.
        string? seen = null;
        ModelBundle.Write(tmp.File("bundle"), "{}", [new("vae.x", TorchSharp.torch.zeros(2))], producer: "test", beforeSwap: temp =>
        {
            Assert.Contains(temp, TemporaryPaths.Current);
            seen = temp;
        });
        Assert.NotNull(seen);
        Assert.DoesNotContain(seen, TemporaryPaths.Current);   // renamed into place: no longer pending
        Assert.True(File.Exists(Path.Combine(tmp.File("bundle"), ModelBundle.ManifestFileName)));

        var file = tmp.File("half.tmp");
        var folder = tmp.File("half-folder");
        File.WriteAllText(file, "x");
        Directory.CreateDirectory(Path.Combine(folder, "inner"));
        using (TemporaryPaths.Track(file))
        using (TemporaryPaths.Track(folder))
        {
            TemporaryPaths.DeleteAll(under: tmp.Path);   // only this test's: other tests write in parallel
            Assert.False(File.Exists(file));
            Assert.False(Directory.Exists(folder));
        }
        // A finished write is forgotten: DeleteAll never touches it.
        var kept = tmp.File("kept.tmp");
        File.WriteAllText(kept, "x");
        using (TemporaryPaths.Track(kept)) { }
        TemporaryPaths.DeleteAll(under: tmp.Path);   // only this test's: other tests write in parallel
        Assert.True(File.Exists(kept));
    }
}
