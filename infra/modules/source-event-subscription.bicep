// BlobCreated events for metadata blobs under SOURCE_CONTAINER, delivered into the run queue with
// the system topic's identity (Storage Queue Data Message Sender on that queue: host-storage.bicep).
// Destination and schema: Event Grid docs, "Storage queue as an event handler".
param topicName string
param sourceContainerName string
param hostStorageId string
param runQueueName string

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: topicName
}

resource toRunQueue 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'new-export-to-run-queue'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    deliveryWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      destination: {
        endpointType: 'StorageQueue'
        properties: {
          resourceId: hostStorageId
          queueName: runQueueName
          queueMessageTimeToLiveInSeconds: 604800
        }
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/${sourceContainerName}/blobs/'
      advancedFilters: [
        {
          operatorType: 'StringEndsWith'
          key: 'subject'
          values: ['/model.json', '.manifest.cdm.json']
        }
      ]
    }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
  }
}
