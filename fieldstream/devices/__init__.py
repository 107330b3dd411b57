"""What runs on or near the devices: the producer SDK and the fleet simulator."""

from fieldstream.devices.producer import DeliveryReport, DeviceProducer, SchemaRejected

__all__ = ["DeliveryReport", "DeviceProducer", "SchemaRejected"]
