using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace VarSharp.Checkpoints;

public static partial class ModelBundle
{
    /// <summary>
    /// Gives a bundle a new config.json and a manifest that records it, as one atomic step: the bundle is verified
    /// first (a damaged or altered bundle is never re-blessed with fresh digests), its other files are copied into a
    /// temporary sibling folder and checked against the manifest again, and the finished folder replaces the old one
    /// by rename. The manifest keeps its other entries and its `sources`.
    /// </summary>
    public static void ReplaceConfig(string dir, string configJson)
    {
        // The new manifest is built from the bytes verified here, never from a second read of manifest.json.
        byte[] manifestBytes = [];
        var manifest = Verify(dir, check: bytes => manifestBytes = bytes);
        if (!manifest.Files.ContainsKey(ConfigFileName))
            throw new ModelBundleException(ModelBundleProblem.MissingFile, $"Model bundle {dir} has no {ConfigFileName} in its manifest, so there is no config to replace.");
        var full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        var parent = Path.GetDirectoryName(full) ?? throw new VarSharpException($"Cannot rewrite a bundle at the file-system root {full}.");
        var temp = Path.Combine(parent, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        using var tracked = TemporaryPaths.Track(temp);
        Directory.CreateDirectory(temp);
        try
        {
            foreach (var (name, (sha, _)) in manifest.Files)
            {
                if (name == ConfigFileName) continue;
                var copy = Path.Combine(temp, name);
                CopyDurably(Path.Combine(full, name), copy);
                // The copy is what will be trusted from now on: check it, not only its source.
                if (FileDigest.Sha256(copy) != sha)
                    throw new ModelBundleException(ModelBundleProblem.DigestMismatch, $"Model bundle file {Path.Combine(full, name)} changed while it was being copied; nothing was replaced.");
            }
            var configPath = Path.Combine(temp, ConfigFileName);
            WriteDurably(configPath, Encoding.UTF8.GetBytes(configJson));

            var root = JsonNode.Parse(manifestBytes)!.AsObject();
            root["files"]![ConfigFileName] = new JsonObject { ["sha256"] = FileDigest.Sha256(configPath), ["bytes"] = new FileInfo(configPath).Length };
            WriteDurably(Path.Combine(temp, ManifestFileName), Encoding.UTF8.GetBytes(root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"));
            SyncDirectory(temp);
            tracked.Publish(() => Swap(temp, full, parent, force: true));
        }
        catch
        {
            DeleteQuietly(temp);
            throw;
        }
    }

    private static void CopyDurably(string from, string to)
    {
        using var source = new FileStream(from, FileMode.Open, FileAccess.Read, FileShare.Read);
        using var target = new FileStream(to, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        source.CopyTo(target, 1 << 20);
        target.Flush(flushToDisk: true);
    }
}
