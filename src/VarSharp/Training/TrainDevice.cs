using TorchSharp;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// Where a trainer computes, and the rules both trainers share about it: weights are created and initialised on the
/// CPU (so a seed gives the same initial weights on every device) and then moved; a checkpoint records the device type
/// because the state of a generator cannot move between device types (CPU: Mersenne Twister, CUDA: Philox).
/// </summary>
public static class TrainDevice
{
    /// <summary>The train-state metadata key holding the device type a run trained on (absent: cpu).</summary>
    public const string MetadataKey = "device";

    /// <summary>The device type's name as checkpoints and logs record it ("cpu", "cuda", …).</summary>
    public static string Name(Device device) => device.type.ToString().ToLowerInvariant();

    /// <summary>Whether two devices are the same: same type, and the same index unless one leaves it open (−1, as torch.CUDA).</summary>
    public static bool Same(Device a, Device b) => a.type == b.type && (a.index == b.index || a.index < 0 || b.index < 0);

    /// <summary>Builds a module on the CPU, initialises it there and moves it to <paramref name="device"/>.</summary>
    public static T Create<T>(Func<T> build, Action<T> initialize, Device device) where T : nn.Module
    {
        var module = build();
        try
        {
            initialize(module);
            if (device.type != DeviceType.CPU) module.to(device);
            return module;
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    /// <summary>Refuses to resume on another device type than the checkpoint's: its generator state would not load.</summary>
    public static void CheckResume(IReadOnlyDictionary<string, string> metadata, Device device, string checkpoint)
    {
        var stored = metadata.GetValueOrDefault(MetadataKey) ?? "cpu";
        if (stored != Name(device))
            throw new VarSharpException(
                $"The checkpoint {checkpoint} was trained on {stored} and its random-generator state cannot move to {Name(device)}; resume it with --device {stored}.");
    }
}
